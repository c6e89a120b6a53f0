"""Redis stopped for 8 s under a steady load of REST calls to a real `agenthub serve` on PostgreSQL
(docs/realtime.md, docs/operations.md): every REST call still succeeds, `GET /v1/health` says
`degraded` (broker) while readiness stays 200, and a WebSocket subscriber on the shipped
`agenthub.client.RealtimeClient` hears new events again by itself once Redis is back.

Redis is a private `redis-server` on a spare port; the shared one is never stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from agenthub.client import Event, RealtimeClient, RecoveryFailed
from private_servers import PrivateRedis, redis_server
from processes import server_process
from realtime.outage_support import migrated_postgres, outage_env
from realtime_support import sign_up
from steady_load import Call, SteadyLoad
from support import Account

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 8.0
CLIENT_TIMEOUT = 10.0
HEALTH_EVERY = 0.5
REALTIME_WAIT = 30.0  # for the first event after Redis returned
EVENT_WAIT = 5.0
POST_EVERY = 0.2  # while waiting for realtime to come back
AFTER_RECOVERY = 5  # messages posted once realtime is back


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    with migrated_postgres("agenthub_redis_outage") as url:
        yield url


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    async with redis_server(tmp_path) as server:
        yield server


async def _new_session(client: httpx.AsyncClient, account: Account) -> str:
    created = await client.post(
        "/v1/sessions", json={"agent_type": "chat"}, headers=account.headers
    )
    assert created.status_code == 201, created.text
    session_id: str = created.json()["session"]["id"]
    return session_id


def _calls(account: Account, session_id: str) -> dict[str, Call]:
    headers = account.headers
    messages = f"/v1/sessions/{session_id}/messages"

    def get(path: str) -> Call:
        async def call(client: httpx.AsyncClient) -> httpx.Response:
            return await client.get(path, headers=headers)

        return call

    async def create_session(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/v1/sessions", json={"agent_type": "chat"}, headers=headers)

    async def post_message(client: httpx.AsyncClient) -> httpx.Response:
        body = {"role": "user", "content": "steady load"}
        return await client.post(messages, json=body, headers=headers)

    return {
        "POST /v1/sessions": create_session,
        "POST /v1/sessions/{id}/messages": post_message,
        "GET /v1/sessions/{id}/messages": get(f"{messages}?limit=20"),
        "GET /v1/sessions/stats": get("/v1/sessions/stats"),
        "GET /v1/files/stats": get("/v1/files/stats"),
        "GET /v1/jobs/stats": get("/v1/jobs/stats"),
        "GET /v1/health/ready": get("/v1/health/ready"),
    }


@dataclass
class HealthLog:
    """`GET /v1/health` every HEALTH_EVERY seconds: when, the overall status and each
    component's."""

    seen: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)

    async def run(self, client: httpx.AsyncClient) -> None:
        while True:
            response = await client.get("/v1/health")
            if response.status_code != 200:
                self.seen.append((time.monotonic(), f"HTTP {response.status_code}", {}))
            else:
                body = response.json()
                components = {name: c["status"] for name, c in body["components"].items()}
                self.seen.append((time.monotonic(), body["status"], components))
            await asyncio.sleep(HEALTH_EVERY)

    def between(self, start: float, end: float) -> list[tuple[str, dict[str, str]]]:
        return [(overall, parts) for at, overall, parts in self.seen if start <= at <= end]


@dataclass
class Listener:
    """Reads a subscription of the shipped client: the ids of the messages whose
    `message.created` arrived, with the time they did, and the recovery notices."""

    arrived: dict[str, float] = field(default_factory=dict)
    notices: list[float] = field(default_factory=list)  # when each recovery notice came

    async def run(self, subscription: AsyncIterator[Event | RecoveryFailed]) -> None:
        async for item in subscription:
            if isinstance(item, RecoveryFailed):
                self.notices.append(time.monotonic())
            elif item.event == "message.created":
                self.arrived[str(item.data["id"])] = time.monotonic()

    async def wait_for(self, message_id: str, wait: float) -> float | None:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if message_id in self.arrived:
                return self.arrived[message_id]
            await asyncio.sleep(0.02)
        return None


async def _post(client: httpx.AsyncClient, account: Account, session_id: str, text: str) -> str:
    response = await client.post(
        f"/v1/sessions/{session_id}/messages",
        json={"role": "user", "content": text},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    message_id: str = response.json()["id"]
    return message_id


async def test_redis_outage_under_rest_load(
    postgres_database: str, redis: PrivateRedis, tmp_path: Path
) -> None:
    env = outage_env(
        postgres_database, redis.url, tmp_path, AGENTHUB_MAX_SESSIONS_PER_AGENT_TYPE="0"
    )
    with server_process(tmp_path, env) as server:
        account = await sign_up(server.http)
        async with httpx.AsyncClient(base_url=server.http, timeout=CLIENT_TIMEOUT) as client:
            loaded = await _new_session(client, account)
            watched = await _new_session(client, account)
            await _outage(server.http, client, account, redis, loaded, watched)


async def _outage(
    base: str,
    client: httpx.AsyncClient,
    account: Account,
    redis: PrivateRedis,
    loaded: str,
    watched: str,
) -> None:
    health, listener = HealthLog(), Listener()
    async with RealtimeClient(base, token=account.access_token) as realtime:
        subscription = await realtime.subscribe(f"session:{watched}")
        tasks = [
            asyncio.create_task(health.run(client)),
            asyncio.create_task(listener.run(subscription)),
        ]
        try:
            before = await _post(client, account, watched, "before the outage")
            assert await listener.wait_for(before, EVENT_WAIT) is not None

            async with SteadyLoad(client, _calls(account, loaded)) as load:
                began = time.monotonic()
                assert (await load.recovered(began, EVENT_WAIT)).keys() == load.calls.keys()
                await redis.stop()
                stopped = time.monotonic()
                # Its event cannot be published: the subscriber must hear of the loss.
                unheard = await _post(client, account, watched, "during the outage")
                await asyncio.sleep(OUTAGE_SECONDS)
                restarting = time.monotonic()
                await redis.start()
                returned = time.monotonic()
                recovery, posted_at = await _realtime_recovery(
                    client, account, watched, listener, returned
                )
                posted = list(posted_at)
                for n in range(AFTER_RECOVERY):
                    posted.append(await _post(client, account, watched, f"after {n}"))
                    posted_at[posted[-1]] = time.monotonic()
                # A recovery notice covers what was posted before it (the client refetches).
                noticed = max(listener.notices, default=0.0)
                missing = [
                    m
                    for m in posted
                    if posted_at[m] > noticed and await listener.wait_for(m, EVENT_WAIT) is None
                ]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    during = load.between(stopped, restarting)
    failed = [str(a) for a in load.answers if not a.ok]
    rate = sum(a.ok for a in during) / len(during) if during else 0.0
    outage_health = health.between(stopped + 2 * HEALTH_EVERY, restarting)
    print(
        f"\nRedis down {restarting - stopped:.1f} s: {len(during)} REST calls during the "
        f"outage, {rate:.2%} succeeded; {len(load.answers)} calls in all, {len(failed)} failed"
    )
    print(
        f"realtime: first event {recovery:.3f} s after redis-server was back; "
        f"{len(posted) - len(missing)} of the {len(posted)} messages posted since arrived; "
        f"{realtime.reconnects} reconnect(s), {len(listener.notices)} recovery notice(s)"
    )
    slowest = max(a.answered - a.sent for a in during)
    print(f"slowest REST call during the outage: {slowest:.3f} s")
    states = {(overall, tuple(sorted(parts.items()))) for overall, parts in outage_health}
    print(f"health while down: {sorted(states)}")

    assert failed == [], failed[:20]
    for name in load.calls:
        assert any(a.call == name for a in during), f"no {name} during the outage"
    assert outage_health, "no health report during the outage"
    assert {(overall, parts.get("broker")) for overall, parts in outage_health} == {
        ("degraded", "degraded")
    }, outage_health
    assert any(parts.get("broker") == "ok" for at, _, parts in health.seen if at > returned)
    assert missing == [], f"no event for {len(missing)} messages posted after Redis returned"
    # Redis came back empty: the client is told to refetch (`recovered: false`) rather than
    # silently missing the message posted while it was down.
    assert unheard in listener.arrived or listener.notices, "a lost event went unnoticed"


async def _realtime_recovery(
    client: httpx.AsyncClient,
    account: Account,
    session_id: str,
    listener: Listener,
    returned: float,
) -> tuple[float, dict[str, float]]:
    """Post a message every POST_EVERY seconds until the subscriber hears one of them: the
    seconds from Redis's return to that first event, and when each message was posted."""
    posted: dict[str, float] = {}
    async with asyncio.timeout(REALTIME_WAIT):
        while not any(m in listener.arrived for m in posted):
            posted[await _post(client, account, session_id, "is anyone there")] = time.monotonic()
            await asyncio.sleep(POST_EVERY)
    first = min(listener.arrived[m] for m in posted if m in listener.arrived)
    return first - returned, posted
