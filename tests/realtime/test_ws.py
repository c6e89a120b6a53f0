"""`/v1/ws` (docs/realtime.md) against real server processes with a real WebSocket client, on both
backends: authentication, resume from an offset, channel isolation, rooms and presence, domain
events, slow consumers, bad frames and limits, heartbeats and graceful shutdown."""

from __future__ import annotations

import asyncio
import json
import secrets
import signal
import time
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Origin

from conftest import Deployment
from processes import Server
from realtime_support import (
    Frame,
    WsPeer,
    create_admin,
    eventually,
    receive,
    sign_up,
    ws_peer,
)

pytestmark = pytest.mark.slow

ABNORMAL = 1006  # what a client sees when the connection ends without a close frame


def room() -> str:
    return f"room:ws-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def strict(deployment: Deployment) -> Iterator[Server]:
    """A node with a small frame limit and a low frame rate."""
    with deployment.node(
        AGENTHUB_WS_MAX_FRAME_BYTES="1024", AGENTHUB_WS_FRAMES_PER_SECOND="5"
    ) as node:
        yield node


async def drain(ws: ClientConnection, wait: float = 5) -> tuple[list[Frame], int]:
    """Every frame up to the end of the connection, which must come within `wait` seconds,
    and the close code the client saw."""
    frames: list[Frame] = []
    try:
        async with asyncio.timeout(wait):
            while True:
                frames.append(json.loads(await ws.recv()))
    except ConnectionClosed as exc:
        return frames, exc.rcvd.code if exc.rcvd is not None else ABNORMAL
    except TimeoutError:
        raise AssertionError(f"still open after {wait} s") from None


async def close_code(ws: ClientConnection, wait: float = 5) -> int:
    """Read (and drop) frames until the server closes; the close code the client saw."""
    return (await drain(ws, wait))[1]


async def hello_of(ws: ClientConnection) -> Frame:
    frame = await receive(ws)
    assert frame["type"] == "connected", frame
    return frame


async def send(ws: ClientConnection, frame: Frame) -> None:
    await ws.send(json.dumps(frame))


def event_offsets(frames: list[Frame]) -> list[int]:
    return [f["offset"] for f in frames]


# -- 1. connect and authenticate ---------------------------------------------------------------


async def test_connected_frame_then_auth_by_query_header_api_key_and_cookie(
    server: Server, api: httpx.AsyncClient
) -> None:
    alice = await sign_up(server.http)

    async with connect(f"{server.ws}?token={alice.access_token}") as ws:
        hello = await hello_of(ws)
        assert set(hello) == {
            "type",
            "connection_id",
            "user_id",
            "heartbeat_interval",
            "expires_in",
        }
        assert hello["connection_id"].startswith("con_")
        assert hello["user_id"] == alice.id
        assert hello["heartbeat_interval"] == 30
        assert 14 * 60 <= hello["expires_in"] <= 15 * 60  # the access token's remaining life

    async with connect(server.ws, additional_headers=alice.headers) as ws:
        other = await hello_of(ws)
        assert other["user_id"] == alice.id
        assert other["connection_id"] != hello["connection_id"]

    created = await api.post("/v1/user/api-keys", json={"name": "ws"}, headers=alice.headers)
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    async with connect(f"{server.ws}?token={key}") as ws:
        by_key = await hello_of(ws)
        assert by_key["user_id"] == alice.id
        assert by_key["expires_in"] is None  # a key without expiry
    async with connect(server.ws, additional_headers={"X-API-Key": key}) as ws:
        assert (await hello_of(ws))["user_id"] == alice.id
    async with connect(server.ws, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        assert (await hello_of(ws))["user_id"] == alice.id

    cookie = {"Cookie": f"access_token={alice.access_token}"}
    async with connect(server.ws, additional_headers=cookie, origin=Origin(server.http)) as ws:
        assert (await hello_of(ws))["user_id"] == alice.id


async def test_missing_invalid_or_cross_origin_credentials_close_4401(server: Server) -> None:
    alice = await sign_up(server.http)
    cookie = {"Cookie": f"access_token={alice.access_token}"}
    attempts: list[tuple[str, dict[str, str], Origin | None]] = [
        (server.ws, {}, None),  # no credential at all
        (f"{server.ws}?token=not-a-token", {}, None),
        (f"{server.ws}?token={alice.access_token}x", {}, None),  # a forged signature
        (server.ws, {"Authorization": "Bearer nope"}, None),
        (server.ws, {"X-API-Key": "ak_nope"}, None),
        (server.ws, cookie, Origin("http://evil.example")),  # the cookie from a foreign page
        (server.ws, cookie, None),  # the cookie without any Origin
    ]
    for url, headers, origin in attempts:
        async with connect(url, additional_headers=headers, origin=origin) as ws:
            assert await close_code(ws) == 4401, (url, headers, origin)


@pytest.mark.parametrize("deployment", ["redis"], indirect=True)
async def test_an_unreachable_database_closes_1013_not_a_dropped_socket(
    deployment: Deployment, server: Server
) -> None:
    """The handshake needs the database; without it the client is told to come back later."""
    alice = await sign_up(server.http)
    unreachable = "postgresql+asyncpg://postgres@127.0.0.1:9/agenthub"
    with deployment.node(
        AGENTHUB_DATABASE_URL=unreachable, AGENTHUB_DB_TIMEOUT_SECONDS="1"
    ) as node:
        async with connect(f"{node.ws}?token={alice.access_token}") as ws:
            assert await close_code(ws) == 1013


# -- 2. resume ---------------------------------------------------------------------------------


async def test_resume_replays_exactly_the_missed_events_then_goes_live(
    server: Server, api: httpx.AsyncClient
) -> None:
    alice = await sign_up(server.http)
    bob = await sign_up(server.http)
    channel = room()

    async with ws_peer(server.ws, alice.access_token) as first:
        hello = await first.subscribe(channel)
        assert (hello["channel"], hello["offset"], hello["recovered"]) == (channel, 0, True)
        epoch = hello["epoch"]
        assert isinstance(epoch, str) and epoch
        joined = await first.event(channel, "presence.join")
        assert (joined["offset"], joined["epoch"]) == (1, epoch)
        gone = first.connection_id

    async def left() -> bool:
        """The server has announced the first connection's departure."""
        response = await api.get(f"/v1/realtime/channels/{channel}/history", headers=alice.headers)
        assert response.status_code == 200, response.text
        events = response.json()["data"]
        return bool(events) and events[-1]["event"] == "presence.leave"

    assert await eventually(left)

    async with ws_peer(server.ws, bob.access_token) as publisher:
        offsets = [(await publisher.publish(channel, {"n": n}))["offset"] for n in range(5)]
        assert offsets == [3, 4, 5, 6, 7]  # after alice's join (1) and leave (2)

        async with ws_peer(server.ws, alice.access_token) as second:
            resumed = await second.subscribe(channel, {"offset": 1, "epoch": epoch})
            assert (resumed["offset"], resumed["epoch"], resumed["recovered"]) == (7, epoch, True)
            missed = [await second.event(channel) for _ in range(6)]
            assert event_offsets(missed) == [2, 3, 4, 5, 6, 7]
            assert missed[0]["event"] == "presence.leave"
            assert missed[0]["data"] == {"connection_id": gone, "user_id": alice.id}
            assert [(f["event"], f["data"]["data"]) for f in missed[1:]] == [
                ("room.message", {"n": n}) for n in range(5)
            ]
            assert all(f["data"]["user_id"] == bob.id for f in missed[1:])
            assert all(f["epoch"] == epoch for f in missed)

            rejoined = await second.event(channel)  # its own arrival, published live
            assert (rejoined["event"], rejoined["offset"]) == ("presence.join", 8)
            assert rejoined["data"]["connection_id"] == second.connection_id
            live = await publisher.publish(channel, {"n": "live"})
            frame = await second.event(channel)
            assert (frame["event"], frame["offset"], frame["data"]["data"]) == (
                "room.message",
                live["offset"],
                {"n": "live"},
            )
            assert frame["offset"] == 9
            await second.barrier()
            assert [f for f in second.backlog if f["type"] == "event"] == []  # no duplicate


async def test_since_zero_replays_all_retained_and_bad_positions_are_not_recovered(
    server: Server,
) -> None:
    alice = await sign_up(server.http)
    channel = room()
    async with ws_peer(server.ws, alice.access_token) as publisher:
        for n in range(4):
            await publisher.publish(channel, {"n": n})

    async with ws_peer(server.ws, alice.access_token) as peer:
        everything = await peer.subscribe(channel, {"offset": 0})
        assert (everything["offset"], everything["recovered"]) == (4, True)
        replay = [await peer.event(channel) for _ in range(4)]
        assert event_offsets(replay) == [1, 2, 3, 4]
        assert [f["data"]["data"] for f in replay] == [{"n": n} for n in range(4)]
        joined = await peer.event(channel)
        assert (joined["event"], joined["offset"]) == ("presence.join", 5)
        epoch = everything["epoch"]

        # A user channel has no presence: nothing at all follows a refused resume.
        mine = f"user:{alice.id}"
        current = await peer.subscribe(mine)
        stale = await peer.subscribe(mine, {"offset": 0, "epoch": "deadbeef"})
        assert (stale["recovered"], stale["epoch"]) == (False, current["epoch"])
        beyond = await peer.subscribe(mine, {"offset": 99, "epoch": current["epoch"]})
        assert beyond["recovered"] is False
        await peer.barrier()
        assert [f for f in peer.backlog if f["type"] == "event"] == []

        stale_room = await peer.subscribe(channel, {"offset": 1, "epoch": "deadbeef"})
        assert (stale_room["recovered"], stale_room["offset"]) == (False, 5)
        beyond_room = await peer.subscribe(channel, {"offset": 50, "epoch": epoch})
        assert beyond_room["recovered"] is False
        await peer.barrier()
        assert [f for f in peer.backlog if f["type"] == "event"] == []  # no replay


# -- 3. isolation ------------------------------------------------------------------------------


async def test_other_users_channels_are_not_found_and_system_is_for_admins(
    deployment: Deployment, server: Server, api: httpx.AsyncClient
) -> None:
    alice = await sign_up(server.http)
    bob = await sign_up(server.http)
    created = await api.post(
        "/v1/sessions", json={"agent_type": "primary", "title": "Bob's"}, headers=bob.headers
    )
    assert created.status_code == 201, created.text
    bobs_session = created.json()["session"]["id"]

    async with ws_peer(server.ws, alice.access_token) as peer:
        for channel in (f"session:{bobs_session}", f"user:{bob.id}", "job:job_0123456789"):
            reply = await peer.request({"type": "subscribe", "channel": channel})
            assert (reply["type"], reply["code"]) == ("error", "not_found"), reply
            assert reply["message"]  # (`request` found the reply by the id it echoes)
        reply = await peer.request({"type": "subscribe", "channel": "system"})
        assert (reply["type"], reply["code"]) == ("error", "forbidden"), reply
        reply = await peer.request({"type": "history", "channel": f"user:{bob.id}"})
        assert (reply["type"], reply["code"]) == ("error", "not_found"), reply
        pong = await peer.request({"type": "ping"})
        assert pong["type"] == "pong"  # still up

    admin = await create_admin(server.http, deployment.workdir, deployment.env)
    async with ws_peer(server.ws, admin.access_token) as operator:
        assert (await operator.subscribe("system"))["recovered"] is True
        notice = {"channel": "system", "event": "system.notification", "data": {"text": "hi"}}
        response = await api.post(
            "/v1/admin/realtime/broadcast", json=notice, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        frame = await operator.event("system")
        assert (frame["event"], frame["data"], frame["offset"]) == (
            "system.notification",
            {"text": "hi"},
            response.json()["offset"],
        )


# -- 4. rooms and presence ---------------------------------------------------------------------


async def test_room_messages_and_presence_between_two_users(server: Server) -> None:
    alice = await sign_up(server.http)
    bob = await sign_up(server.http)
    channel = room()
    async with ws_peer(server.ws, bob.access_token) as listener:
        await listener.subscribe(channel)
        own = await listener.event(channel, "presence.join")
        assert own["data"]["connection_id"] == listener.connection_id

        async with ws_peer(server.ws, alice.access_token) as speaker:
            await speaker.subscribe(channel)
            joined = await listener.event(channel, "presence.join")
            assert set(joined["data"]) == {"connection_id", "user_id", "joined_at"}
            assert joined["data"]["connection_id"] == speaker.connection_id
            assert joined["data"]["user_id"] == alice.id

            published = await speaker.publish(channel, {"text": "hello", "n": [1, 2]})
            assert published["offset"] == joined["offset"] + 1
            heard = await listener.event(channel, "room.message")
            assert (heard["offset"], heard["epoch"]) == (published["offset"], published["epoch"])
            assert heard["data"] == {
                "connection_id": speaker.connection_id,
                "user_id": alice.id,
                "data": {"text": "hello", "n": [1, 2]},
            }
            echoed = await speaker.event(channel, "room.message")  # the sender hears it too
            assert echoed["offset"] == published["offset"]

            presence = await listener.request({"type": "presence", "channel": channel})
            assert presence["type"] == "presence" and presence["channel"] == channel
            members = {(m["connection_id"], m["user_id"]) for m in presence["members"]}
            assert members == {(listener.connection_id, bob.id), (speaker.connection_id, alice.id)}

            for frame in (
                {"type": "publish", "channel": f"user:{alice.id}", "data": {"x": 1}},
                {"type": "presence", "channel": f"user:{alice.id}"},
            ):
                refused = await speaker.request(frame)
                assert (refused["type"], refused["code"]) == ("error", "forbidden"), refused
            gone = speaker.connection_id

        left = await listener.event(channel, "presence.leave")
        assert left["data"] == {"connection_id": gone, "user_id": alice.id}
        presence = await listener.request({"type": "presence", "channel": channel})
        assert [m["connection_id"] for m in presence["members"]] == [listener.connection_id]


# -- 5. domain events --------------------------------------------------------------------------


async def test_rest_writes_arrive_on_session_and_user_channels(
    server: Server, api: httpx.AsyncClient
) -> None:
    alice = await sign_up(server.http)
    mine = f"user:{alice.id}"
    async with ws_peer(server.ws, alice.access_token) as peer:
        await peer.subscribe(mine)
        created = await api.post(
            "/v1/sessions", json={"agent_type": "primary", "title": "Live"}, headers=alice.headers
        )
        assert created.status_code == 201, created.text
        session_id = created.json()["session"]["id"]
        frame = await peer.event(mine, "session.updated")
        assert frame["data"]["id"] == session_id and frame["data"]["title"] == "Live"
        assert frame["data"]["message_count"] == 0

        channel = f"session:{session_id}"
        await peer.subscribe(channel)
        posted = await api.post(
            f"/v1/sessions/{session_id}/messages",
            json={"role": "user", "content": "hi"},
            headers=alice.headers,
        )
        assert posted.status_code == 201, posted.text
        message = await peer.event(channel, "message.created")
        assert message["data"]["id"] == posted.json()["id"]
        assert (message["data"]["content"], message["data"]["role"]) == ("hi", "user")
        assert message["data"]["session_id"] == session_id
        updated = await peer.event(channel, "session.updated")
        assert updated["offset"] == message["offset"] + 1
        assert updated["data"]["message_count"] == 1
        counted = await peer.event(mine, "session.updated")
        assert counted["data"]["id"] == session_id and counted["data"]["message_count"] == 1


# -- 6. slow consumers -------------------------------------------------------------------------

SLOW_EVENTS = 2000
PAD = "x" * 8000  # 16 MB in all: several times what the socket buffers of a stalled client hold
WINDOW = 8  # the publisher stays at most this many events ahead of the fast reader


async def test_slow_consumer_is_closed_4008_and_does_not_slow_others(
    deployment: Deployment,
) -> None:
    with deployment.node(
        AGENTHUB_WS_SEND_QUEUE_SIZE="32", AGENTHUB_WS_FRAMES_PER_SECOND="100000"
    ) as node:
        slow_user, fast_user, sender = [await sign_up(node.http) for _ in range(3)]
        channel = room()
        # max_queue=1: the client library stops reading the socket as soon as one frame waits;
        # no compression, or the padding would shrink to almost nothing on the wire.
        async with connect(
            f"{node.ws}?token={slow_user.access_token}",
            max_queue=1,
            ping_interval=None,
            compression=None,
        ) as slow:
            await hello_of(slow)
            await send(slow, {"type": "subscribe", "channel": channel, "id": "s"})
            assert (await receive(slow))["type"] == "subscribed"
            # From here on the slow client reads nothing until the publisher is done.
            async with (
                ws_peer(node.ws, fast_user.access_token) as fast,
                ws_peer(node.ws, sender.access_token) as publisher,
            ):
                await fast.subscribe(channel)
                received = await publish_while_reading(fast, publisher, channel)
            assert received == list(range(SLOW_EVENTS))  # everything, in order

            async with httpx.AsyncClient(base_url=node.http, timeout=10) as client:

                async def closed_slow() -> int:
                    response = await client.get("/v1/realtime/stats", headers=sender.headers)
                    assert response.status_code == 200, response.text
                    closes: int = response.json()["slow_consumer_closes"]
                    return closes

                assert await eventually(closed_slow) >= 1

            frames, code = await drain(slow, 30)
            assert code in (4008, ABNORMAL), code
            messages = [f for f in frames if f.get("event") == "room.message"]
            assert len(messages) < SLOW_EVENTS
            # What did arrive is a gapless prefix: the client can resume from its last offset.
            offsets = [f["offset"] for f in frames if f["type"] == "event"]
            assert all(b == a + 1 for a, b in pairwise(offsets)), offsets


async def publish_while_reading(fast: WsPeer, publisher: WsPeer, channel: str) -> list[int]:
    """Publish SLOW_EVENTS large room messages; the `n` of each one the fast peer got."""
    received: list[int] = []
    progress = asyncio.Event()

    async def read_fast() -> None:
        while len(received) < SLOW_EVENTS:
            frame = await receive(fast.ws, 20)
            if frame["type"] == "event" and frame["event"] == "room.message":
                received.append(frame["data"]["data"]["n"])
                progress.set()

    acknowledged = 0

    async def read_acks() -> None:
        nonlocal acknowledged
        while acknowledged < SLOW_EVENTS:
            frame = await receive(publisher.ws, 20)
            assert frame["type"] == "published", frame
            acknowledged += 1

    async def publish() -> None:
        for n in range(SLOW_EVENTS):
            while len(received) < n - WINDOW:
                progress.clear()
                await progress.wait()
            frame = {"type": "publish", "channel": channel, "data": {"n": n, "pad": PAD}}
            await send(publisher.ws, frame)

    async with asyncio.timeout(60):
        await asyncio.gather(read_fast(), read_acks(), publish())
    return received


# -- 7. bad frames and limits ------------------------------------------------------------------


async def test_bad_frames_get_errors_and_the_connection_survives(server: Server) -> None:
    alice = await sign_up(server.http)
    async with ws_peer(server.ws, alice.access_token) as peer:
        await peer.ws.send("{not json")
        reply = await peer.next()
        assert (reply["type"], reply["code"], reply["id"]) == ("error", "invalid_json", None)
        assert reply["message"]
        await peer.ws.send('[{"type": "ping", "id": "x"}]')
        reply = await peer.next()
        assert (reply["type"], reply["code"]) == ("error", "invalid_frame")

        cases: list[tuple[Frame, str]] = [
            ({"type": "shout"}, "unknown_type"),
            ({}, "unknown_type"),
            ({"type": "subscribe"}, "invalid_frame"),
            ({"type": "subscribe", "channel": 7}, "invalid_frame"),
            ({"type": "subscribe", "channel": "nowhere:x"}, "invalid_channel"),
            ({"type": "subscribe", "channel": "room:white space"}, "invalid_channel"),
            ({"type": "subscribe", "channel": "room:" + "x" * 200}, "invalid_channel"),
            ({"type": "subscribe", "channel": "room:a", "since": {"offset": -1}}, "invalid_frame"),
            ({"type": "history", "channel": "room:a", "limit": 0}, "invalid_frame"),
            ({"type": "ping", "extra": True}, "invalid_frame"),
            ({"type": "publish", "channel": "room:a", "data": "text"}, "invalid_frame"),
            ({"type": "unsubscribe", "channel": "room:never"}, "not_subscribed"),
        ]
        for frame, code in cases:
            reply = await peer.request(frame)
            assert (reply["type"], reply["code"]) == ("error", code), (frame, reply)
            assert reply["message"], reply  # (`request` found it by the id it echoes)

        await send(peer.ws, {"type": "ping", "id": 42})
        assert await peer.next() == {"type": "pong", "id": 42}
        channel = room()
        await peer.subscribe(channel)
        left = await peer.request({"type": "unsubscribe", "channel": channel})
        assert (left["type"], left["channel"]) == ("unsubscribed", channel)
        assert_no_stray_replies(peer)


def assert_no_stray_replies(peer: WsPeer) -> None:
    """Every reply was claimed by its request: no frame got two answers."""
    stray = [f for f in peer.backlog if f["type"] != "event"]
    assert stray == [], stray


async def test_frames_over_the_size_limit_close_1009(strict: Server) -> None:
    alice = await sign_up(strict.http)
    async with connect(f"{strict.ws}?token={alice.access_token}") as ws:
        await hello_of(ws)
        await send(ws, {"type": "ping", "id": "p" * 900})  # under 1024 bytes
        assert (await receive(ws))["type"] == "pong"
        await send(ws, {"type": "ping", "id": "p" * 2000})
        assert await close_code(ws) == 1009


async def test_flooding_is_rate_limited_then_closed_4429(strict: Server) -> None:
    alice = await sign_up(strict.http)
    async with connect(f"{strict.ws}?token={alice.access_token}") as ws:
        await hello_of(ws)
        for n in range(8):  # 5 a second are allowed
            await send(ws, {"type": "ping", "id": n})
        replies = [await receive(ws) for _ in range(8)]
        assert [r["id"] for r in replies] == list(range(8))
        assert [r["type"] for r in replies] == ["pong"] * 5 + ["error"] * 3
        assert {r["code"] for r in replies[5:]} == {"rate_limited"}
        await asyncio.sleep(1.1)  # a new second: allowed again
        await send(ws, {"type": "ping", "id": "again"})
        assert await receive(ws) == {"type": "pong", "id": "again"}

    async with connect(f"{strict.ws}?token={alice.access_token}") as ws:
        await hello_of(ws)
        try:
            for n in range(30):
                await send(ws, {"type": "ping", "id": n})
        except ConnectionClosed:
            pass  # closed while still sending
        assert await close_code(ws) == 4429


# -- 8. heartbeats, ping and history -----------------------------------------------------------


async def test_heartbeats_keep_answering_clients_and_close_silent_ones_4408(
    deployment: Deployment,
) -> None:
    with deployment.node(AGENTHUB_HEARTBEAT_INTERVAL="0.5") as node:
        alice = await sign_up(node.http)
        url = f"{node.ws}?token={alice.access_token}"

        async def silent() -> tuple[list[Frame], int, float]:
            """What a client that never sends a frame receives, its close code and how many
            seconds it stayed open."""
            async with connect(url) as ws:
                started = time.monotonic()
                assert (await hello_of(ws))["heartbeat_interval"] == 0.5
                frames, code = await drain(ws)
                return frames, code, time.monotonic() - started

        async def answering() -> list[Any]:
            """The ids of the `heartbeat_ack`s received in 2.2 s of answering each heartbeat."""
            acks: list[Any] = []
            async with connect(url) as ws:
                await hello_of(ws)
                sent = 0
                deadline = time.monotonic() + 2.2
                while time.monotonic() < deadline:
                    try:
                        async with asyncio.timeout(deadline - time.monotonic()):
                            frame = json.loads(await ws.recv())
                    except TimeoutError:
                        break
                    if frame["type"] == "heartbeat":
                        sent += 1
                        await send(ws, {"type": "heartbeat", "id": sent})
                    else:
                        assert frame["type"] == "heartbeat_ack", frame
                        acks.append(frame["id"])
                await send(ws, {"type": "ping", "id": "still"})
                # the ack of a heartbeat answered just before the deadline may come first
                while (frame := await receive(ws))["type"] == "heartbeat_ack":
                    acks.append(frame["id"])
                assert frame == {"type": "pong", "id": "still"}
            return acks

        (beats, code, elapsed), acks = await asyncio.gather(silent(), answering())
        assert code == 4408
        assert beats and all(frame == {"type": "heartbeat"} for frame in beats), beats
        assert 0.9 < elapsed < 5, elapsed  # silent for two intervals (1 s), checked every 0.5 s
        assert len(acks) >= 3 and acks == list(range(1, len(acks) + 1)), acks


async def test_ping_pong_and_history_frames(server: Server) -> None:
    alice = await sign_up(server.http)
    channel = room()
    async with ws_peer(server.ws, alice.access_token) as peer:
        await send(peer.ws, {"type": "ping", "id": "abc"})
        assert await peer.next() == {"type": "pong", "id": "abc"}
        await send(peer.ws, {"type": "ping"})
        assert await peer.next() == {"type": "pong", "id": None}

        published = [await peer.publish(channel, {"n": n}) for n in range(5)]
        epoch = published[0]["epoch"]

        latest = await peer.request({"type": "history", "channel": channel, "limit": 3})
        assert latest["type"] == "history" and latest["channel"] == channel
        assert (latest["offset"], latest["epoch"], latest["recovered"]) == (5, epoch, True)
        assert event_offsets(latest["events"]) == [3, 4, 5]
        assert [e["data"]["data"] for e in latest["events"]] == [{"n": n} for n in (2, 3, 4)]
        assert all(e["type"] == "event" and e["channel"] == channel for e in latest["events"])

        since = {"offset": 1, "epoch": epoch}
        after = await peer.request(
            {"type": "history", "channel": channel, "since": since, "limit": 2}
        )
        assert (after["recovered"], event_offsets(after["events"])) == (True, [2, 3])
        everything = await peer.request({"type": "history", "channel": channel})
        assert event_offsets(everything["events"]) == [1, 2, 3, 4, 5]
        stale = await peer.request(
            {"type": "history", "channel": channel, "since": {"offset": 1, "epoch": "deadbeef"}}
        )
        assert (stale["recovered"], stale["events"]) == (False, [])


# -- 9. graceful shutdown ----------------------------------------------------------------------


async def test_sigterm_closes_websockets_with_1001_and_the_server_exits(
    deployment: Deployment,
) -> None:
    with deployment.node() as node:
        alice = await sign_up(node.http)
        async with ws_peer(node.ws, alice.access_token) as peer:
            await peer.subscribe(f"user:{alice.id}")
            node.proc.send_signal(signal.SIGTERM)
            assert await close_code(peer.ws, 10) == 1001
        returncode = await asyncio.to_thread(node.proc.wait, 30)
        # uvicorn shuts down gracefully, then re-raises the signal it caught.
        assert returncode in (0, -signal.SIGTERM), returncode
        assert "Traceback" not in node.log.read_text()


async def test_connections_and_disconnections_are_metrics(
    server: Server, api: httpx.AsyncClient
) -> None:
    alice = await sign_up(server.http)

    async def gauge() -> tuple[float, float]:
        text = (await api.get("/metrics")).text
        found = {"websocket_connections": 0.0, "websocket_disconnections_total": 0.0}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in found:
                    found[sample.name] += sample.value
        return found["websocket_connections"], found["websocket_disconnections_total"]

    open_before, closed_before = await gauge()
    async with (
        ws_peer(server.ws, alice.access_token) as one,
        ws_peer(server.ws, alice.access_token),
    ):
        await one.barrier()
        assert (await gauge())[0] == open_before + 2

    async def both_closed() -> bool:
        return await gauge() == (open_before, closed_before + 2)

    assert await eventually(both_closed)
