"""Helpers for tests of the idea-to-spec app (import as `from ideas_support import ...`)."""

from __future__ import annotations

from typing import Any

import httpx

from jobs_support import wait_job
from support import Account


async def generate(
    client: httpx.AsyncClient, account: Account, idea: str, **options: Any
) -> dict[str, Any]:
    """`POST /v1/generate` with the echo runner (unless `runner` is given); the 202 body."""
    body = {"idea": idea, "options": {"runner": "echo", **options}}
    response = await client.post("/v1/generate", json=body, headers=account.headers)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def get_idea(client: httpx.AsyncClient, account: Account, idea_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/ideas/{idea_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    idea: dict[str, Any] = response.json()
    return idea


async def generated(
    client: httpx.AsyncClient, account: Account, idea: str, **options: Any
) -> dict[str, Any]:
    """Generate a spec for `idea`, wait for its job to finish, and return the idea."""
    accepted = await generate(client, account, idea, **options)
    await wait_job(client, account, accepted["job_id"])
    return await get_idea(client, account, accepted["idea_id"])
