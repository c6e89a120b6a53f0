"""Redis hangs (a proxy that stops forwarding: connections stay open, nothing answers) under the
scale-out deployment: an API node started with `--no-worker` and an `agenthub worker`, on
PostgreSQL. Writes keep their latency, `GET /v1/health` answers within a second with the broker
`degraded`, and a client that resumes across the hang gets every event published meanwhile or
is told `recovered: false` (SPEC §6): never `recovered: true` with a gap.

Redis is a private `redis-server` behind `CuttingProxy`; the shared one is never touched."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from agenthub.db import migrate
from conftest import TEST_SECRET, fresh_postgres
from jobs.worker_support import workers
from jobs_support import create_job, wait_job
from private_servers import CuttingProxy, PrivateRedis, redis_server
from processes import clean_env, server_process
from realtime_support import Frame, WsPeer, sign_up, ws_peer
from support import Account

pytestmark = pytest.mark.slow

T = TypeVar("T")
WRITE_BOUND = 1.5  # seconds; before the relay, writes took 5-10 s while Redis hung
HEALTH_BOUND = 1.0
ROUNDS = 3  # of each write while Redis hangs
STREAM_WORDS = 40
STREAM_DELAY_MS = 150  # the job streams for about 6 s: it runs on through the hang
NOTICE_WAIT = 20.0  # for the live subscribers to hear of the gap once Redis answers again
UNLIMITED = "1000000/minute"


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    with fresh_postgres("agenthub_redis_hang") as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    async with redis_server(tmp_path) as server:
        yield server


@pytest.fixture
async def proxy(redis: PrivateRedis) -> AsyncIterator[CuttingProxy]:
    async with CuttingProxy("127.0.0.1", redis.port) as running:
        yield running


@asynccontextmanager
async def off_loop(manager: AbstractContextManager[T]) -> AsyncIterator[T]:
    """Enter and leave a blocking context manager in a thread: the proxy runs on this loop,
    and the processes need it while they start and stop."""
    value = await asyncio.to_thread(manager.__enter__)
    try:
        yield value
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


def _env(database: str, redis: PrivateRedis, proxy: CuttingProxy, workdir: Path) -> dict[str, str]:
    return clean_env(
        AGENTHUB_DATABASE_URL=database,
        AGENTHUB_REDIS_URL=f"redis://:{redis.password}@127.0.0.1:{proxy.port}/0",
        AGENTHUB_SECRET_KEY=TEST_SECRET,
        AGENTHUB_AUTO_MIGRATE="false",
        AGENTHUB_LOG_LEVEL="WARNING",
        AGENTHUB_FILES_DIR=str(workdir / "files"),
        AGENTHUB_JOB_POLL_SECONDS="0.2",
        AGENTHUB_RATE_LIMIT_USER=UNLIMITED,
        AGENTHUB_RATE_LIMIT_IP=UNLIMITED,
        AGENTHUB_LOGIN_LIMIT_IP=UNLIMITED,
        AGENTHUB_LOGIN_LIMIT_ACCOUNT=UNLIMITED,
    )


def position(frame: Frame) -> Frame:
    return {"epoch": frame["epoch"], "offset": frame["offset"]}


class Timed:
    """Requests with how long each took."""

    def __init__(self, client: httpx.AsyncClient, account: Account) -> None:
        self.client = client
        self.account = account
        self.seconds: dict[str, list[float]] = {}

    async def call(self, name: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        began = time.perf_counter()
        response = await self.client.request(method, path, headers=self.account.headers, **kwargs)
        self.seconds.setdefault(name, []).append(time.perf_counter() - began)
        return response

    def report(self) -> str:
        return ", ".join(
            f"{name} max {max(values):.3f} s (of {len(values)})"
            for name, values in self.seconds.items()
        )


async def _writes_while_hung(timed: Timed) -> list[str]:
    """Each write a few times, and health after each round: the ids of the projects created."""
    projects: list[str] = []
    for n in range(ROUNDS):
        created = await timed.call(
            "POST /v1/projects", "POST", "/v1/projects", json={"name": f"p{n}"}
        )
        assert created.status_code == 201, created.text
        projects.append(created.json()["id"])
        session = await timed.call(
            "POST /v1/sessions", "POST", "/v1/sessions", json={"agent_type": "chat"}
        )
        assert session.status_code == 201, session.text
        job = await timed.call(
            "POST /v1/jobs",
            "POST",
            "/v1/jobs",
            json={"kind": "llm.complete", "input": {"prompt": "hung", "runner": "echo"}},
        )
        assert job.status_code == 202, job.text
        health = await timed.call("GET /v1/health", "GET", "/v1/health")
        assert health.status_code == 200, health.text
        assert health.json()["components"]["broker"]["status"] == "degraded", health.text
    return projects


async def _heard_of_gap(peer: WsPeer, channel: str, expected: set[str]) -> str:
    """What a live subscriber of `channel` learnt once Redis answered again: `notice` (an
    unsolicited `subscribed` with `recovered: false`) or `events` (every event in `expected`,
    by data id, arrived)."""
    missing = set(expected)
    async with asyncio.timeout(NOTICE_WAIT):
        while True:
            frame = await peer.next(lambda f: f.get("channel") == channel, NOTICE_WAIT)
            if frame["type"] == "subscribed" and frame["recovered"] is False:
                return "notice"
            if frame["type"] == "event":
                missing.discard(str(frame["data"].get("id")))
                if not missing:
                    return "events"


async def _resumed(
    base: str, account: Account, channel: str, since: Frame, expected: set[str]
) -> tuple[bool, str]:
    """A new connection resuming `channel` from `since`: whether it was told `recovered`, and
    its epoch. Recovered, it must replay every event in `expected`."""
    async with ws_peer(base, account.access_token) as peer:
        reply = await peer.subscribe(channel, since)
        if reply["recovered"]:
            replayed: set[str] = set()
            while not expected <= replayed:
                frame = await peer.event(channel)
                replayed.add(str(frame["data"].get("id")))
        return bool(reply["recovered"]), str(reply["epoch"])


async def test_writes_and_events_while_redis_hangs(
    postgres_database: str, redis: PrivateRedis, proxy: CuttingProxy, tmp_path: Path
) -> None:
    env = _env(postgres_database, redis, proxy, tmp_path)
    async with (
        off_loop(server_process(tmp_path, env, "--no-worker")) as server,
        off_loop(workers(tmp_path, env)) as group,
    ):
        group.start("--concurrency", "2")
        account = await sign_up(server.http)
        user = f"user:{account.id}"
        async with (
            httpx.AsyncClient(base_url=server.http, timeout=30) as client,
            ws_peer(server.ws, account.access_token) as live,
        ):
            timed = Timed(client, account)
            await live.subscribe(user)
            before = await client.post(
                "/v1/projects", json={"name": "before"}, headers=account.headers
            )
            assert before.status_code == 201, before.text
            seen = {user: position(await live.event(user, "project.created"))}

            words = " ".join(f"w{n}" for n in range(STREAM_WORDS))
            options = {"delay_ms": STREAM_DELAY_MS}
            job = await create_job(
                client,
                account,
                "llm.complete",
                {"prompt": words, "runner": "echo", "options": options},
            )
            channel = f"job:{job['id']}"
            await live.subscribe(channel, {"offset": 0})
            seen[channel] = position(await live.event(channel, "message.delta", wait=20))

            proxy.hang()
            projects = await _writes_while_hung(timed)
            print(f"\nwhile Redis hung: {timed.report()}")
            for name, values in timed.seconds.items():
                bound = HEALTH_BOUND if name.startswith("GET") else WRITE_BOUND
                assert max(values) < bound, (name, values)
            done = await wait_job(client, account, job["id"], within=60)
            assert done["status"] == "completed", done
            proxy.resume()

            # The live connection hears of the gap on both channels.
            assert await _heard_of_gap(live, user, set(projects)) in ("notice", "events")
            assert await _heard_of_gap(live, channel, {job["id"]}) in ("notice", "events")

            # A client resuming from where it was: every event, or `recovered: false`.
            for name, expected in ((user, set(projects)), (channel, {job["id"]})):
                recovered, epoch = await _resumed(server.ws, account, name, seen[name], expected)
                history = await client.get(
                    f"/v1/realtime/channels/{name}/history",
                    params={"since": f"{seen[name]['epoch']}:{seen[name]['offset']}"},
                    headers=account.headers,
                )
                assert history.status_code == 200, history.text
                assert history.json()["epoch"] == epoch
                if not recovered:
                    assert history.json()["recovered"] is False
                    assert epoch != seen[name]["epoch"]

            # Realtime works again, on the new log.
            after = await client.post(
                "/v1/projects", json={"name": "after"}, headers=account.headers
            )
            assert after.status_code == 201, after.text
            event = await live.event(user, "project.created")
            assert event["data"]["id"] == after.json()["id"]
