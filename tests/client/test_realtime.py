"""`RealtimeClient` against real `agenthub serve` processes, once with SQLite and the
in-process broker and once with PostgreSQL and Redis: requests, domain events, resuming
after drops and server-side closes without gaps or duplicates, and fatal 4401."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack

import pytest

from agenthub.client import (
    AgentHubClient,
    AuthenticationFailed,
    ConnectionLost,
    Event,
    Position,
    RealtimeClient,
    RealtimeError,
    RecoveryFailed,
    Subscription,
)
from conftest import Deployment
from processes import Server
from support import PASSWORD

pytestmark = pytest.mark.slow

HEARTBEAT = 0.5  # seconds: the server closes a connection silent for two of them
FRAMES_PER_SECOND = 5  # a strict node's: a flood is one however slowly the server reads
WAIT = 10.0


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[Server]:
    with deployment.node(AGENTHUB_HEARTBEAT_INTERVAL=str(HEARTBEAT)) as node:
        yield node


@pytest.fixture(scope="module")
def brief(deployment: Deployment) -> Iterator[Server]:
    """A node whose access tokens expire after 3 s."""
    with deployment.node(
        AGENTHUB_HEARTBEAT_INTERVAL=str(HEARTBEAT), AGENTHUB_ACCESS_TOKEN_MINUTES="0.05"
    ) as node:
        yield node


@pytest.fixture(scope="module")
def strict(deployment: Deployment) -> Iterator[Server]:
    """A node with a low frame budget."""
    with deployment.node(
        AGENTHUB_HEARTBEAT_INTERVAL=str(HEARTBEAT),
        AGENTHUB_WS_FRAMES_PER_SECOND=str(FRAMES_PER_SECOND),
    ) as node:
        yield node


async def signed_in(base: str) -> AgentHubClient:
    """A REST client of a new, logged-in user."""
    api = AgentHubClient(base)
    email = f"client-{secrets.token_hex(5)}@example.com"
    await api.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    await api.login(email, PASSWORD)
    return api


@pytest.fixture
async def api(server: Server) -> AsyncIterator[AgentHubClient]:
    async with await signed_in(server.http) as client:
        yield client


@pytest.fixture
async def rt(api: AgentHubClient) -> AsyncIterator[RealtimeClient]:
    async with api.realtime(backoff_cap=0.5) as client:
        yield client


async def next_item(sub: Subscription) -> Event | RecoveryFailed:
    async with asyncio.timeout(WAIT):
        return await anext(sub)


class Stream:
    """A subscription and every event it yielded so far."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.seen: list[Event] = []

    async def messages(self, count: int) -> list[Event]:
        """The next `count` room messages (skipping presence events), checking that every
        event in between came exactly once, in offset order."""
        found: list[Event] = []
        while len(found) < count:
            item = await next_item(self.sub)
            assert isinstance(item, Event), item
            if self.seen and item.epoch == self.seen[-1].epoch:
                assert item.offset == self.seen[-1].offset + 1, (self.seen[-1], item)
            self.seen.append(item)
            if item.event == "room.message":
                found.append(item)
        return found


def payloads(events: list[Event]) -> list[object]:
    return [e.data["data"]["i"] for e in events]


async def publish(publisher: RealtimeClient, room: str, numbers: range) -> None:
    for i in numbers:
        await publisher.publish(room, {"i": i})


async def reconnected(client: RealtimeClient, before: int) -> None:
    """Wait until the client reconnected (again) and resubscribed."""
    for _ in range(int(WAIT / 0.02)):
        if client.reconnects > before and client.connected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no reconnect: {client.reconnects} reconnects, {client.failure!r}")


def room_name() -> str:
    return f"room:test-{secrets.token_hex(4)}"


# -- requests ------------------------------------------------------------------------------


async def test_connected_ping_presence_publish_history(
    api: AgentHubClient, rt: RealtimeClient
) -> None:
    profile = await api.get("/v1/user/profile")
    assert rt.user_id == profile["id"] and rt.connection_id and rt.heartbeat_interval == HEARTBEAT
    assert await rt.ping() >= 0
    room = room_name()
    sub = Stream(await rt.subscribe(room))
    members = await rt.presence(room)
    assert [m["connection_id"] for m in members] == [rt.connection_id]
    offsets = [await rt.publish(room, {"i": i}) for i in range(3)]
    assert offsets == sorted(offsets) and len(set(offsets)) == 3
    assert payloads(await sub.messages(3)) == [0, 1, 2]
    page = await rt.history(room, since=Position(offsets[0], sub.seen[-1].epoch), limit=1)
    assert page.recovered and page.offset >= offsets[-1]
    assert [e.offset for e in page.events] == [offsets[0] + 1]
    await sub.sub.unsubscribe()
    assert [item async for item in sub.sub] == []


async def test_domain_events_arrive_on_the_user_channel(
    api: AgentHubClient, rt: RealtimeClient
) -> None:
    sub = await rt.subscribe(f"user:{rt.user_id}")
    project = await api.post("/v1/projects", json={"name": "Lisbon"})
    item = await next_item(sub)
    assert isinstance(item, Event) and item.event == "project.created", item
    assert item.channel == f"user:{rt.user_id}" and project["id"] in str(item.data)


async def test_error_frames_raise_realtime_error(rt: RealtimeClient) -> None:
    cases = [("system", "forbidden"), ("user:someone-else", "not_found"), ("bad channel", "")]
    for channel, code in cases * 2:  # twice: a refused subscription is not kept
        with pytest.raises(RealtimeError) as failed:
            await rt.subscribe(channel)
        assert failed.value.code == (code or failed.value.code), failed.value
    with pytest.raises(RealtimeError) as refused:
        await rt.publish(f"user:{rt.user_id}", {"x": 1})
    assert refused.value.code == "forbidden"
    assert await rt.ping() >= 0 and rt.reconnects == 0  # the connection stays up


async def test_replay_since_and_a_stale_epoch(rt: RealtimeClient, server: Server) -> None:
    room = room_name()
    async with await signed_in(server.http) as other, other.realtime() as publisher:
        await publish(publisher, room, range(3))
    replay = Stream(await rt.subscribe(room, since=Position(0)))
    assert payloads(await replay.messages(3)) == [0, 1, 2]
    await replay.sub.unsubscribe()

    stale = Stream(await rt.subscribe(room, since=Position(2, "not-the-epoch")))
    notice = await next_item(stale.sub)
    assert isinstance(notice, RecoveryFailed) and notice.channel == room
    assert notice.epoch == replay.seen[-1].epoch and notice.offset >= 3
    await rt.publish(room, {"i": "live"})
    assert payloads(await stale.messages(1)) == ["live"]


async def test_heartbeats_keep_an_idle_connection_open(rt: RealtimeClient) -> None:
    connection = rt.connection_id
    await asyncio.sleep(HEARTBEAT * 4)  # the server closes connections silent for two
    assert rt.connected and rt.reconnects == 0 and rt.connection_id == connection
    assert await rt.ping() >= 0


# -- reconnects ----------------------------------------------------------------------------


async def test_drop_reconnects_and_resumes_without_gaps_or_duplicates(
    rt: RealtimeClient, server: Server
) -> None:
    room = room_name()
    sub = Stream(await rt.subscribe(room))
    async with await signed_in(server.http) as other, other.realtime() as publisher:
        await publish(publisher, room, range(5))
        assert payloads(await sub.messages(5)) == list(range(5))
        first = rt.connection_id
        for round_ in range(3):  # repeated network changes, events published meanwhile
            await rt.drop()
            await publish(publisher, room, range(5 + 10 * round_, 15 + 10 * round_))
            await reconnected(rt, round_)
        await publish(publisher, room, range(35, 40))
        assert payloads(await sub.messages(35)) == list(range(5, 40))
    assert rt.reconnects == 3 and rt.connection_id != first and rt.last_close_code == 1006


async def test_server_close_4429_reconnects_and_resumes(strict: Server) -> None:
    room = room_name()
    async with await signed_in(strict.http) as api, api.realtime(backoff_cap=0.5) as rt:
        sub = Stream(await rt.subscribe(room))
        await rt.publish(room, {"i": 0})
        # Far over twice the frame budget in a second, however slowly the server reads them.
        results = await asyncio.gather(*(rt.ping() for _ in range(60)), return_exceptions=True)
        assert any(isinstance(r, ConnectionLost) for r in results), results  # flood: closed
        async with await signed_in(strict.http) as other:
            # Each batch from a connection of its own: one connection's frames within a
            # second stay under the strict node's budget however fast the reconnect is.
            async with other.realtime() as publisher:
                await publish(publisher, room, range(1, 4))
            await reconnected(rt, 0)
            assert rt.last_close_code == 4429
            async with other.realtime() as publisher:
                await publish(publisher, room, range(4, 6))
        assert payloads(await sub.messages(6)) == list(range(6))


async def test_server_restart_1001_resumes_or_reports_recovery_failed(
    deployment: Deployment,
) -> None:
    nodes = ExitStack()
    node = await asyncio.to_thread(
        nodes.enter_context, deployment.node(AGENTHUB_HEARTBEAT_INTERVAL=str(HEARTBEAT))
    )
    try:
        async with await signed_in(node.http) as api, api.realtime(backoff_cap=0.3) as rt:
            room = room_name()
            sub = Stream(await rt.subscribe(room))
            await publish(rt, room, range(3))
            assert payloads(await sub.messages(3)) == [0, 1, 2]
            await asyncio.to_thread(nodes.close)  # SIGTERM
            restarted = deployment.node(port=node.port, AGENTHUB_HEARTBEAT_INTERVAL=str(HEARTBEAT))
            node = await asyncio.to_thread(nodes.enter_context, restarted)
            await reconnected(rt, 0)
            assert rt.last_close_code == 1001
            if deployment.backend == "memory":  # the log lived in the old process
                notice = await next_item(sub.sub)
                assert isinstance(notice, RecoveryFailed) and notice.channel == room
                sub.seen = []  # a new log: offsets start over
            await publish(rt, room, range(3, 6))
            # with Redis the leave of the old connection, published after it closed, is
            # replayed: `messages` checks that nothing in between is missing
            assert payloads(await sub.messages(3)) == [3, 4, 5]
    finally:
        await asyncio.to_thread(nodes.close)


async def test_a_refused_token_is_fatal_and_not_retried(api: AgentHubClient) -> None:
    with pytest.raises(AuthenticationFailed):
        await RealtimeClient(api.base_url, token="ahk_not-a-key").connect()

    key = await api.post("/v1/user/api-keys", json={"name": "realtime"})
    rt = await RealtimeClient(api.base_url, token=key["key"], backoff_cap=0.2).connect()
    try:
        sub = await rt.subscribe(f"user:{rt.user_id}")
        await api.delete(f"/v1/user/api-keys/{key['id']}")
        await rt.drop()  # the reconnect presents the revoked key: 4401
        with pytest.raises(AuthenticationFailed):
            await next_item(sub)
        with pytest.raises(AuthenticationFailed):
            await rt.wait_closed()
        assert isinstance(rt.failure, AuthenticationFailed) and rt.reconnects == 0
        with pytest.raises(AuthenticationFailed):
            await rt.ping()
    finally:
        await rt.close()


async def test_fresh_tokens_are_sent_before_they_expire(brief: Server) -> None:
    """A client with a token provider outlives several access tokens on one connection; one
    with a fixed token is closed (4401) when it expires."""
    async with await signed_in(brief.http) as api, api.realtime(backoff_cap=0.5) as rt:
        fixed = await RealtimeClient(api.base_url, token=api.token).connect()
        try:
            sub = await rt.subscribe(f"user:{rt.user_id}")
            await asyncio.sleep(2 * 3 + 1)  # two lifetimes of a token
            with pytest.raises(AuthenticationFailed):
                await fixed.wait_closed()
            assert fixed.last_close_code == 4401
            assert rt.connected and rt.reconnects == 0 and rt.failure is None
            await api.post("/v1/projects", json={"name": "after renewals"})
            item = await next_item(sub)
            assert isinstance(item, Event) and item.event == "project.created", item
        finally:
            await fixed.close()


# -- the subscription's bookkeeping, without a server -------------------------------------


def event(offset: int, epoch: str = "e1") -> Event:
    return Event("room:x", offset, epoch, "room.message", {"i": offset}, "ts")


async def never(_: Subscription) -> None:
    raise AssertionError("not called")


async def test_subscription_drops_replayed_events_and_follows_new_epochs() -> None:
    sub = Subscription("room:x", None, never)
    sub._on_subscribed({"epoch": "e1", "offset": 2, "recovered": True})
    for item in (event(3), event(4), event(3), event(4), event(5), event(1, "e2")):
        sub._on_event(item)
    sub._finish()
    got = [item async for item in sub]
    assert [(e.epoch, e.offset) for e in got if isinstance(e, Event)] == [
        ("e1", 3),
        ("e1", 4),
        ("e1", 5),
        ("e2", 1),
    ]
    assert sub.position == Position(1, "e2")
    assert sub.frame()["since"] == {"offset": 1, "epoch": "e2"}


async def test_a_full_queue_becomes_one_recovery_notice() -> None:
    sub = Subscription("room:x", Position(0, "e1"), never, maxsize=3)
    for offset in range(1, 6):
        sub._on_event(event(offset))
    sub._finish()
    got = [item async for item in sub]
    assert got == [RecoveryFailed("room:x", "e1", 4), event(5)]
