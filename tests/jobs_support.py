"""Helpers for tests that drive jobs through the API (import as `from jobs_support import ...`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from support import Account

FINAL = ("completed", "failed", "canceled")


async def create_job(
    client: httpx.AsyncClient, account: Account, kind: str, payload: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """`POST /v1/jobs` and the 202 body."""
    response = await client.post(
        "/v1/jobs", json={"kind": kind, "input": payload, **fields}, headers=account.headers
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def wait_job(
    client: httpx.AsyncClient,
    account: Account,
    job_id: str,
    statuses: tuple[str, ...] = FINAL,
    within: float = 20.0,
) -> dict[str, Any]:
    """Poll `GET /v1/jobs/{id}` (the clients' fallback) until its status is one of `statuses`."""
    deadline = time.monotonic() + within
    while True:
        response = await client.get(f"/v1/jobs/{job_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job still {job['status']}: {job}"
        await asyncio.sleep(0.02)


async def channel_events(
    client: httpx.AsyncClient, account: Account, channel: str
) -> list[dict[str, Any]]:
    """The retained events of a channel, oldest first, through the history route."""
    response = await client.get(
        f"/v1/realtime/channels/{channel}/history", params={"limit": 1000}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["data"]
    return events


async def wait_event(
    client: httpx.AsyncClient, account: Account, channel: str, event: str, within: float = 20.0
) -> list[dict[str, Any]]:
    """The channel's retained events once one named `event` is among them."""
    deadline = time.monotonic() + within
    while True:
        events = await channel_events(client, account, channel)
        if any(e["event"] == event for e in events):
            return events
        assert time.monotonic() < deadline, f"no {event} on {channel}: {events}"
        await asyncio.sleep(0.02)
