"""The stats cache: a repeated read is a hit, every kind of write (through the API or by a job
worker) makes the stats it changes fresh, users never share entries, Redis keys stay under the
prefix, and a Redis outage costs hits, never answers.

The API tests run on SQLite with the in-process cache and on PostgreSQL with Redis. The TTL is
an hour, so a fresh value after a write can only come from invalidation.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from agenthub.cache.base import CacheUnavailable
from agenthub.cache.memory import MemoryCache
from agenthub.cache.redis import RedisCache
from agenthub.cache.stale import ALL_USERS, EVERYONE
from conftest import AccountFactory, asgi_client, custom_app, login_admin, make_settings
from private_servers import CuttingProxy, PrivateRedis, redis_server
from realtime_support import drop_prefix, redis_url, require_redis
from session_support import new_session, post_message
from support import Account, register

SESSIONS, PROJECTS, FILES, JOBS = (
    f"/v1/{n}/stats" for n in ("sessions", "projects", "files", "jobs")
)
TTL = 3600
Body = dict[str, Any]


@dataclass
class User:
    client: httpx.AsyncClient
    account: Account

    async def read(self, path: str) -> tuple[str, Body]:
        """(X-Cache, body) of a GET that must succeed."""
        response = await self.client.get(path, headers=self.account.headers)
        assert response.status_code == 200, response.text
        body: Body = response.json()
        return response.headers["X-Cache"], body

    async def changed_by(self, path: str, write: Awaitable[Any]) -> Body:
        """Cache `path` (the second read is a hit), run `write`, read `path` again: a miss,
        whose body is returned."""
        await self.read(path)
        assert (await self.read(path))[0] == "hit"
        await write
        outcome, body = await self.read(path)
        assert outcome == "miss", body
        return body

    async def eventually(self, path: str, done: Callable[[Body], bool]) -> Body:
        """Read `path` until `done(body)`: that first fresh read is a miss (the write behind it
        invalidated the entry; the TTL is an hour)."""
        deadline = time.monotonic() + 20
        while True:
            outcome, body = await self.read(path)
            if done(body):
                assert outcome == "miss", body
                return body
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.05)

    async def send(self, method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = await self.client.request(method, path, headers=self.account.headers, **kwargs)
        assert response.status_code == status, response.text
        return response.json() if response.content else None


def later_job(seconds: float = 3600, **fields: Any) -> Body:
    """A job body that runs in `seconds` (an `llm.complete` on the echo runner by default)."""
    run_at = (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
    return {"kind": "llm.complete", "input": {"prompt": "hi"}, "run_at": run_at, **fields}


@pytest.fixture
async def cached_app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The app with an hour's TTL: the in-process cache on SQLite, Redis on PostgreSQL."""
    overrides: dict[str, Any] = {"cache_ttl_seconds": TTL, "job_poll_seconds": 0.2}
    prefix = None
    if not database_url.startswith("sqlite"):
        require_redis()
        prefix = f"test{secrets.token_hex(4)}"
        overrides |= {"redis_url": redis_url(), "redis_prefix": prefix}
    try:
        async with custom_app(database_url, tmp_path, **overrides) as app:
            yield app
    finally:
        if prefix is not None:
            drop_prefix(prefix)


@pytest.fixture
async def client(cached_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(cached_app) as c:
        yield c


@pytest.fixture
async def user(client: httpx.AsyncClient, make_account: AccountFactory) -> User:
    return User(client, await make_account())


async def test_a_repeated_read_is_a_hit_with_the_same_body(user: User) -> None:
    agent = await user.send("POST", "/v1/agents", 201, json={"name": "a", "type": "primary"})
    for path in (SESSIONS, PROJECTS, FILES, JOBS, f"/v1/agents/{agent['id']}/metrics"):
        first, second = await user.read(path), await user.read(path)
        assert (first[0], second[0]) == ("miss", "hit"), path
        assert second[1] == first[1]


async def test_each_write_makes_the_stats_it_changes_fresh(user: User) -> None:
    chat = await new_session(user.client, user.account)
    stats = await user.changed_by(SESSIONS, new_session(user.client, user.account))
    assert stats["totals"]["sessions"] == 2
    stats = await user.changed_by(SESSIONS, post_message(user.client, user.account, chat["id"]))
    assert stats["totals"]["messages"] == 1
    deleted = user.send("DELETE", f"/v1/sessions/{chat['id']}", 204)
    assert (await user.changed_by(SESSIONS, deleted))["totals"]["sessions"] == 1

    upload = user.send(
        "POST", "/v1/files", 201, files=[("files", ("a.txt", b"hello", "text/plain"))]
    )
    stats = await user.changed_by(FILES, upload)
    assert (stats["count"], stats["total_bytes"]) == (1, 5)
    (stored,) = (await user.send("GET", "/v1/files", 200))["data"]
    stats = await user.changed_by(FILES, user.send("DELETE", f"/v1/files/{stored['id']}", 204))
    assert stats["count"] == 0

    created = user.send("POST", "/v1/projects", 201, json={"name": "p"})
    assert (await user.changed_by(PROJECTS, created))["total"] == 1

    job: Body = {}

    async def enqueue() -> None:
        job.update(await user.send("POST", "/v1/jobs", 202, json=later_job()))

    assert (await user.changed_by(JOBS, enqueue()))["by_status"] == {"queued": 1}
    canceled = user.send("POST", f"/v1/jobs/{job['id']}/cancel", 200)
    assert (await user.changed_by(JOBS, canceled))["by_status"] == {"canceled": 1}
    gone = user.send("DELETE", f"/v1/jobs/{job['id']}", 204)
    assert (await user.changed_by(JOBS, gone))["by_status"] == {}


async def test_jobs_run_by_the_worker_make_their_stats_fresh(
    client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    """The in-process worker runs one user's `llm.complete` (only the queue's own UPDATEs
    write) and another's `agent.reply` (which also stores the assistant's message and counts
    as the agent's run): each user's stats come fresh from the worker's writes."""
    prompter, chatter = User(client, await make_account()), User(client, await make_account())
    agent = await chatter.send("POST", "/v1/agents", 201, json={"name": "a", "type": "primary"})
    chat = await new_session(client, chatter.account, agent_id=agent["id"])
    message = await post_message(client, chatter.account, chat["id"])
    metrics = f"/v1/agents/{agent['id']}/metrics"
    # Both run in 1.5 s, after the reads below cached the stats.
    await prompter.send("POST", "/v1/jobs", 202, json=later_job(1.5))
    reply = {"session_id": chat["id"], "message_id": message["id"]}
    await chatter.send(
        "POST", "/v1/jobs", 202, json=later_job(1.5, kind="agent.reply", input=reply)
    )
    for reader, path in (
        (prompter, JOBS),
        (chatter, JOBS),
        (chatter, SESSIONS),
        (chatter, metrics),
    ):
        await reader.read(path)
        assert (await reader.read(path))[0] == "hit"
    assert (await chatter.read(SESSIONS))[1]["totals"]["messages"] == 1

    await prompter.eventually(JOBS, lambda s: s["by_status"] == {"completed": 1})
    await chatter.eventually(JOBS, lambda s: s["by_status"] == {"completed": 1})
    await chatter.eventually(SESSIONS, lambda s: s["totals"]["messages"] == 2)
    await chatter.eventually(metrics, lambda m: m["runs"] == 1)


async def test_another_users_writes_neither_show_nor_invalidate(
    client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    mine, theirs = User(client, await make_account()), User(client, await make_account())
    await new_session(client, mine.account)
    for path in (SESSIONS, JOBS):
        await mine.read(path)
    await new_session(client, theirs.account)
    await theirs.send("POST", "/v1/projects", 201, json={"name": "theirs"})
    await theirs.send("POST", "/v1/jobs", 202, json=later_job())

    outcome, sessions = await mine.read(SESSIONS)
    assert (outcome, sessions["totals"]["sessions"]) == ("hit", 1)
    outcome, jobs = await mine.read(JOBS)
    assert (outcome, jobs["by_status"]) == ("hit", {})
    mine_created = mine.send("POST", "/v1/projects", 201, json={"name": "mine"})
    projects = await mine.changed_by(PROJECTS, mine_created)
    assert [p["name"] for p in projects["projects"]] == ["mine"]
    outcome, sessions = await theirs.read(SESSIONS)
    assert (outcome, sessions["totals"]["sessions"]) == ("miss", 1)


async def test_administrators_job_stats_follow_every_users_jobs(
    cached_app: FastAPI, client: httpx.AsyncClient, user: User
) -> None:
    admin = User(client, await login_admin(cached_app, client))
    enqueued = user.send("POST", "/v1/jobs", 202, json=later_job())
    assert (await admin.changed_by(JOBS, enqueued))["by_status"] == {"queued": 1}


# -- the backends themselves -----------------------------------------------------------------


async def test_memory_cache_is_bounded_and_a_write_during_a_read_wins() -> None:
    cache = MemoryCache(ttl=TTL, max_entries=2)
    for key in ("a", "b", "c"):
        found = await cache.get("usr_1", key)
        assert found.version is not None
        await cache.set("usr_1", key, key.encode(), found.version, TTL)
    assert [(await cache.get("usr_1", k)).value for k in "abc"] == [None, b"b", b"c"]

    before = await cache.get(ALL_USERS, "x")  # a reader notes the version, then queries...
    assert before.version is not None
    await cache.invalidate({"usr_2"})  # ...while any user's write commits
    await cache.set(ALL_USERS, "x", b"read before the write", before.version, TTL)
    assert (await cache.get(ALL_USERS, "x")).value is None
    assert (await cache.get("usr_1", "c")).value == b"c"
    await cache.invalidate({EVERYONE})
    assert (await cache.get("usr_1", "c")).value is None


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    async with redis_server(tmp_path) as server:
        yield server


async def pinged(cache: RedisCache) -> None:
    """Wait (10 s at most) until `cache.ping()` says the cache serves hits again."""
    deadline = time.monotonic() + 10
    while True:
        try:
            await cache.ping()
            return
        except CacheUnavailable:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


async def test_a_lost_invalidation_distrusts_every_entry_until_a_new_epoch(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Redis frozen (SIGSTOP): a read times out into a miss, and an invalidation in the retry
    window never reaches Redis. Thawed, Redis still holds the old value under its version,
    yet no node serves it: the node that lost the invalidation replaces the epoch first."""
    settings = make_settings(
        "sqlite+aiosqlite:///unused.db",
        tmp_path,
        redis_url=private_redis.url,
        redis_prefix="t",
        cache_timeout_seconds=0.2,
    )
    node, other = RedisCache(settings), RedisCache(settings)
    assert private_redis.process is not None
    pid = private_redis.process.pid
    try:
        found = await node.get("usr_1", "k")
        assert found.version is not None
        await node.set("usr_1", "k", b"old", found.version, TTL)
        assert (await other.get("usr_1", "k")).value == b"old"

        os.kill(pid, signal.SIGSTOP)
        try:
            assert (await node.get("usr_1", "k")).version is None  # compute, do not store
            await node.invalidate({"usr_1"})  # within the retry window: lost
            with pytest.raises(CacheUnavailable):
                await node.ping()
        finally:
            os.kill(pid, signal.SIGCONT)

        await pinged(node)
        assert (await other.get("usr_1", "k")).value is None
        assert (await node.get("usr_1", "k")).value is None
    finally:
        await node.close()
        await other.close()


async def test_a_request_on_a_cut_connection_is_retried_on_a_new_one(tmp_path: Path) -> None:
    """Redis is fine but the connection carrying a read, then one carrying an invalidation,
    breaks: each is sent again on a new connection, so the entry is still a hit and the
    invalidation is not lost (which would distrust every entry)."""
    require_redis()
    target = urlsplit(redis_url())
    prefix = f"test{secrets.token_hex(4)}"
    try:
        async with CuttingProxy(target.hostname or "127.0.0.1", target.port or 6379) as proxy:
            url = target._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()
            settings = make_settings(
                "sqlite+aiosqlite:///unused.db", tmp_path, redis_url=url, redis_prefix=prefix
            )
            cache = RedisCache(settings)
            try:
                found = await cache.get("usr_1", "k")
                assert found.version is not None
                await cache.set("usr_1", "k", b"cached", found.version, TTL)

                proxy.cut_next()
                assert (await cache.get("usr_1", "k")).value == b"cached"
                proxy.cut_next()
                await cache.invalidate({"usr_1"})
                await cache.ping()  # raises while entries are distrusted
                assert (await cache.get("usr_1", "k")).value is None
                assert proxy.cuts == 2
            finally:
                await cache.close()
    finally:
        drop_prefix(prefix)


# -- Redis through the app -------------------------------------------------------------------


async def redis_keys(url: str, pattern: str) -> set[str]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return {key async for key in client.scan_iter(match=pattern, count=1000)}
    finally:
        await client.aclose()


async def test_redis_keys_live_under_the_prefix(postgres_url: str, tmp_path: Path) -> None:
    require_redis()
    prefix = f"test{secrets.token_hex(4)}"
    try:
        async with (
            custom_app(postgres_url, tmp_path, redis_url=redis_url(), redis_prefix=prefix) as app,
            asgi_client(app) as client,
        ):
            user = User(client, await register(client, f"k-{secrets.token_hex(4)}@example.com"))
            await user.changed_by(SESSIONS, new_session(client, user.account))
            keys = await redis_keys(redis_url(), f"*{user.account.id}*")
            assert all(key.startswith(f"{prefix}:") for key in keys), keys
            assert {key for key in keys if ":cache:" in key} == {
                f"{prefix}:cache:gen:{user.account.id}",
                f"{prefix}:cache:val:{user.account.id}:sessions.stats",
            }
    finally:
        drop_prefix(prefix)


async def cache_health(client: httpx.AsyncClient) -> Body:
    response = await client.get("/v1/health")
    assert response.status_code == 200, response.text
    component: Body = response.json()["components"]["cache"]
    return component


async def test_stats_answer_through_a_redis_outage_and_cache_again_after(
    postgres_url: str, tmp_path: Path, private_redis: PrivateRedis
) -> None:
    async with (
        custom_app(
            postgres_url, tmp_path, redis_url=private_redis.url, cache_ttl_seconds=TTL
        ) as app,
        asgi_client(app) as client,
    ):
        user = User(client, await register(client, f"o-{secrets.token_hex(4)}@example.com"))
        await new_session(client, user.account)
        await user.read(SESSIONS)
        assert (await user.read(SESSIONS))[0] == "hit"
        assert (await cache_health(client))["status"] == "ok"
        assert (await cache_health(client))["detail"] == "redis"

        await private_redis.stop()
        outcome, stats = await user.read(SESSIONS)
        assert (outcome, stats["totals"]["sessions"]) == ("miss", 1)
        await new_session(client, user.account)  # its invalidation cannot reach Redis
        outcome, stats = await user.read(SESSIONS)
        assert (outcome, stats["totals"]["sessions"]) == ("miss", 2)
        assert (await cache_health(client))["status"] == "degraded"

        await private_redis.start()
        deadline = time.monotonic() + 10
        while (await cache_health(client))["status"] != "ok":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        outcome, stats = await user.read(SESSIONS)
        assert (outcome, stats["totals"]["sessions"]) == ("miss", 2)
        assert (await user.read(SESSIONS))[0] == "hit"
