"""Redis hangs (a proxy that stops forwarding: connections stay open, nothing answers) under the
scale-out deployment: an API node started with `--no-worker` and an `agenthub worker`, on
PostgreSQL. Writes keep their latency, `GET /v1/health` answers within a second with the broker
`degraded`, and a client that resumes across the hang gets every event published meanwhile or
is told `recovered: false` (docs/realtime.md): never `recovered: true` with a gap.

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

from jobs.worker_support import workers
from jobs_support import create_job, wait_job
from private_servers import CuttingProxy, redis_server
from processes import server_process
from realtime.outage_support import migrated_postgres, outage_env
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


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    with migrated_postgres("agenthub_redis_hang") as url:
        yield url


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[CuttingProxy, str]]:
    """A private Redis behind a proxy: the proxy, and the URL of Redis through it."""
    async with (
        redis_server(tmp_path) as redis,
        CuttingProxy("127.0.0.1", redis.port) as proxy,
    ):
        yield proxy, f"redis://:{redis.password}@127.0.0.1:{proxy.port}/0"


@asynccontextmanager
async def off_loop(manager: AbstractContextManager[T]) -> AsyncIterator[T]:
    """Enter and leave a blocking context manager in a thread: the proxy runs on this loop,
    and the processes need it while they start and stop."""
    value = await asyncio.to_thread(manager.__enter__)
    try:
        yield value
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


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
        return "; ".join(
            f"{name} " + " ".join(f"{value:.3f}" for value in values)
            for name, values in self.seconds.items()
        )


async def _writes_while_hung(timed: Timed) -> list[str]:
    """Each write a few times, and the probes after each round: the ids of the projects created."""
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
        ready = await timed.call("GET /v1/health/ready", "GET", "/v1/health/ready")
        assert ready.status_code == 200, ready.text  # REST works: the node stays ready
    return projects


Expected = set[tuple[str, str]]  # (event, data id) of events published while Redis hung


def _after(frame: Frame, since: Frame) -> bool:
    return bool(frame["epoch"] != since["epoch"] or frame["offset"] > since["offset"])


async def _heard_of_gap(peer: WsPeer, channel: str, since: Frame, expected: Expected) -> str:
    """What a live subscriber of `channel` learnt once Redis answered again: `notice` (an
    unsolicited `subscribed` with `recovered: false`) or `events` (every one of `expected`
    arrived after `since`)."""
    missing = set(expected)
    async with asyncio.timeout(NOTICE_WAIT):
        while True:
            frame = await peer.next(lambda f: f.get("channel") == channel, NOTICE_WAIT)
            if frame["type"] == "subscribed" and frame["recovered"] is False:
                return "notice"
            if frame["type"] == "event" and _after(frame, since):
                missing.discard((frame["event"], str(frame["data"].get("id"))))
                if not missing:
                    return "events"


async def _resumed(
    base: str, account: Account, channel: str, since: Frame, expected: Expected
) -> tuple[bool, str]:
    """A new connection resuming `channel` from `since`: whether it was told `recovered`, and
    its epoch. Recovered, it must replay every event in `expected`."""
    async with ws_peer(base, account.access_token) as peer:
        reply = await peer.subscribe(channel, since)
        if reply["recovered"]:
            replayed: Expected = set()
            while not expected <= replayed:
                frame = await peer.event(channel)
                replayed.add((frame["event"], str(frame["data"].get("id"))))
        return bool(reply["recovered"]), str(reply["epoch"])


async def test_writes_and_events_while_redis_hangs(
    postgres_database: str, proxied: tuple[CuttingProxy, str], tmp_path: Path
) -> None:
    proxy, url = proxied
    env = outage_env(postgres_database, url, tmp_path, AGENTHUB_JOB_POLL_SECONDS="0.2")
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
            done = await wait_job(client, account, job["id"], within=60)
            assert done["status"] == "completed", done
            # By now the node knows Redis is unavailable: realtime says so at once.
            began = time.perf_counter()
            async with ws_peer(server.ws, account.access_token) as peer:
                refused = await peer.request({"type": "subscribe", "channel": user})
            timed.seconds["WS connect + subscribe"] = [time.perf_counter() - began]
            assert (refused["type"], refused["code"]) == ("error", "unavailable"), refused
            print(f"\nseconds while Redis hung: {timed.report()}")
            for name, values in timed.seconds.items():
                bound = HEALTH_BOUND if name.startswith("GET") else WRITE_BOUND
                assert max(values) < bound, (name, values)
            proxy.resume()

            # The live connection hears of the gap on both channels (or gets every event).
            missed = {
                user: {("project.created", project) for project in projects},
                channel: {("job.completed", job["id"])},
            }
            heard = [await _heard_of_gap(live, c, seen[c], e) for c, e in missed.items()]

            # A client resuming from where it was: every event, or `recovered: false`.
            resumed = []
            for name, expected in missed.items():
                recovered, epoch = await _resumed(server.ws, account, name, seen[name], expected)
                resumed.append(recovered)
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
            print(f"live subscriber: {heard}; resumed with recovered={resumed}")
