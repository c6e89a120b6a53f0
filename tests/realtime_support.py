"""Helpers of the realtime tests (import as `from realtime_support import ...`)."""

from __future__ import annotations

import json
import os
import secrets
from asyncio import timeout as asyncio_timeout
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection

from support import PASSWORD, Account


def redis_url() -> str:
    return os.environ.get("AGENTHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis() -> None:
    """Skip unless Redis answers (fail when `CI` is set)."""
    try:
        redis.Redis.from_url(redis_url(), socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required in CI but unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")


def drop_prefix(prefix: str) -> None:
    """Delete every Redis key a test deployment created under `prefix`."""
    client = redis.Redis.from_url(redis_url())
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


async def sign_up(base: str) -> Account:
    """Register and log in a new user on a running server."""
    email = f"rt-{secrets.token_hex(5)}@example.com"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        created = await client.post(
            "/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        tokens = login.json()
    return Account(
        created.json()["id"], email, PASSWORD, tokens["access_token"], tokens["refresh_token"]
    )


async def receive(ws: ClientConnection, wait: float = 5) -> dict[str, Any]:
    """The next frame, decoded; skips the server's `heartbeat` frames."""
    while True:
        async with asyncio_timeout(wait):
            frame: dict[str, Any] = json.loads(await ws.recv())
        if frame["type"] != "heartbeat":
            return frame
