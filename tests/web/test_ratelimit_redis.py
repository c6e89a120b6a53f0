"""Rate limits through a Redis outage, on a real `agenthub serve` (PostgreSQL) whose Redis is a
private `redis-server` that the test stops and starts again: requests keep their answers and
headers, counted in process meanwhile; health says so; the counters go back to Redis by
themselves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from conftest import TEST_SECRET
from private_servers import PrivateRedis, redis_server
from processes import clean_env, server_process
from realtime_support import eventually, sign_up

pytestmark = pytest.mark.slow

PREFIX = "rl-outage"


def quota(response: httpx.Response) -> tuple[int, int]:
    return int(response.headers["RateLimit-Limit"]), int(response.headers["RateLimit-Remaining"])


async def rate_limits_health(client: httpx.AsyncClient) -> dict[str, Any]:
    health = await client.get("/v1/health")
    assert health.status_code == 200, health.text
    component: dict[str, Any] = health.json()["components"]["rate_limits"]
    return component


async def user_keys(private: PrivateRedis, user_id: str) -> list[str]:
    """The rate-limit counters of `user_id` in the private Redis."""
    client = aioredis.Redis.from_url(private.url, decode_responses=True)
    try:
        keys = await client.keys(f"{PREFIX}:ratelimit:*")
    finally:
        await client.aclose()
    return [str(key) for key in keys if f"/user/{user_id}/" in str(key)]


async def restored(client: httpx.AsyncClient) -> bool:
    status: str = (await rate_limits_health(client))["status"]
    return status == "ok"


def logged(log: Path, event: str) -> int:
    lines = (line for line in log.read_text().splitlines() if line.startswith("{"))
    return sum(1 for line in lines if json.loads(line).get("event") == event)


async def test_redis_outage_counts_in_process_then_returns_to_redis(
    postgres_url: str, tmp_path: Path
) -> None:
    async with redis_server(tmp_path) as private:
        env = clean_env(
            AGENTHUB_DATABASE_URL=postgres_url,
            AGENTHUB_REDIS_URL=private.url,
            AGENTHUB_REDIS_PREFIX=PREFIX,
            AGENTHUB_SECRET_KEY=TEST_SECRET,
            AGENTHUB_AUTO_MIGRATE="false",
            AGENTHUB_LOG_LEVEL="WARNING",
            AGENTHUB_LOG_FORMAT="json",
            AGENTHUB_FILES_DIR=str(tmp_path / "files"),
            AGENTHUB_RATE_LIMIT_USER="5/minute",
        )
        with server_process(tmp_path, env) as server:
            async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:
                first = await sign_up(server.http)
                projects = await client.get("/v1/projects", headers=first.headers)
                assert projects.status_code == 200 and quota(projects) == (5, 4)
                assert await user_keys(private, first.id)
                component = await rate_limits_health(client)
                assert (component["status"], component["detail"]) == ("ok", "redis")

                await private.stop()
                # Every call is answered, with its headers; the limit still holds, in process.
                during = [await client.get("/v1/projects", headers=first.headers) for _ in range(6)]
                assert [r.status_code for r in during] == [200] * 5 + [429]
                assert [quota(r) for r in during] == [(5, n) for n in (4, 3, 2, 1, 0, 0)]
                component = await rate_limits_health(client)
                assert component["status"] == "degraded"
                assert "redis unavailable" in component["detail"]
                assert private.password not in component["detail"]

                await private.start()  # the same port, empty: nothing was saved
                # Redis is tried again every 5 s, whether requests come or not.
                await eventually(lambda: restored(client), wait=15)
                # Back on Redis: the in-process count is left behind, Redis counts anew.
                again = await client.get("/v1/projects", headers=first.headers)
                assert again.status_code == 200 and quota(again) == (5, 4)
                assert await user_keys(private, first.id)
        assert logged(server.log, "rate_limit_storage_fallback") == 1
        assert logged(server.log, "rate_limit_storage_restored") == 1
