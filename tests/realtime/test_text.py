"""Realtime text is valid Unicode and rooms keep their members to themselves (issue 15), on
real server processes, on both deployments: a `publish` holding a lone surrogate is an
`invalid_frame` error that breaks nobody else's connection, a frame nested 5,000 deep is
`invalid_json` without a traceback, an event that got into a channel's log with a lone
surrogate anyway (written straight into Redis, or into the in-process log) reaches every reader
with U+FFFD, and a room's presence is listed only to its members."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI

from agenthub.core.events import timestamp
from agenthub.realtime.channels import Principal
from agenthub.realtime.redis import PUBLISH_LUA
from agenthub.realtime.sse import render
from conftest import Deployment
from processes import Server
from realtime_support import (
    Frame,
    SseReader,
    WsPeer,
    create_admin,
    redis_url,
    sign_up,
    sse_stream,
    ws_peer,
)
from support import Account

pytestmark = pytest.mark.slow

LONE = "\ud800"


def room() -> str:
    return f"room:text-{secrets.token_hex(4)}"


async def first_message(stream: SseReader) -> Frame:
    """The next `room.message` event frame on an SSE stream (skipping the others)."""
    while True:
        frame: Frame = (await stream.message()).json()
        if frame.get("event") == "room.message":
            return frame


async def history(api: httpx.AsyncClient, account: Account, channel: str) -> list[Frame]:
    response = await api.get(
        f"/v1/realtime/channels/{channel}/history", params={"since": "0"}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    events: list[Frame] = response.json()["data"]
    return events


async def test_a_lone_surrogate_publish_is_refused_and_the_room_carries_on(
    server: Server, api: httpx.AsyncClient
) -> None:
    alice = await sign_up(server.http)
    mallory = await sign_up(server.http)
    channel = room()
    async with (
        ws_peer(server.ws, alice.access_token) as listener,
        ws_peer(server.ws, mallory.access_token) as speaker,
        sse_stream(server.http, channel, headers=alice.headers) as stream,
    ):
        await listener.subscribe(channel)
        await speaker.subscribe(channel)

        refused = await speaker.request(
            {"type": "publish", "channel": channel, "data": {"x": LONE, "y": 1}}
        )
        assert (refused["type"], refused["code"]) == ("error", "invalid_frame"), refused
        assert refused["message"].startswith("data.x: "), refused
        key = await speaker.request({"type": "publish", "channel": channel, "data": {LONE: 1}})
        assert (key["type"], key["code"]) == ("error", "invalid_frame"), key
        await speaker.barrier()

        after = await speaker.publish(channel, {"text": "after"})
        heard = await listener.event(channel, "room.message")
        assert (heard["offset"], heard["data"]["data"]) == (after["offset"], {"text": "after"})
        await listener.barrier()
        assert (await first_message(stream))["data"]["data"] == {"text": "after"}

    events = await history(api, alice, channel)
    assert [e["data"]["data"] for e in events if e["event"] == "room.message"] == [
        {"text": "after"}
    ]
    async with ws_peer(server.ws, alice.access_token) as late:
        await late.subscribe(channel, since={"offset": 0})
        replayed = await late.event(channel, "room.message")
        assert replayed["data"]["data"] == {"text": "after"}
        await late.barrier()


async def test_a_frame_nested_5000_deep_is_invalid_json_without_a_traceback(
    server: Server,
) -> None:
    alice = await sign_up(server.http)
    logged = server.log.stat().st_size
    deep = "[" * 5000 + "]" * 5000
    async with ws_peer(server.ws, alice.access_token) as peer:
        await peer.ws.send(deep)
        reply = await peer.next()
        assert (reply["type"], reply["code"], reply["id"]) == ("error", "invalid_json", None)
        await peer.ws.send(
            f'{{"type": "publish", "id": "d", "channel": "{room()}", "data": {deep}}}'
        )
        reply = await peer.next()
        assert (reply["type"], reply["code"]) == ("error", "invalid_json"), reply
        await peer.barrier()
    log = server.log.read_text()[logged:]
    assert "Traceback" not in log and "frame_failed" not in log, log


@pytest.fixture
async def in_redis(deployment: Deployment) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url())
    try:
        yield client
    finally:
        await client.aclose()


@pytest.mark.parametrize("deployment", ["redis"], indirect=True)
async def test_an_event_written_into_redis_with_a_lone_surrogate_breaks_no_reader(
    deployment: Deployment, server: Server, api: httpx.AsyncClient, in_redis: aioredis.Redis
) -> None:
    """The event is appended and fanned out by the broker's own script, as if a node had
    published it: live subscribers, the history route and a replay all get U+FFFD."""
    alice = await sign_up(server.http)
    channel = room()
    prefix = deployment.env["AGENTHUB_REDIS_PREFIX"]
    async with (
        ws_peer(server.ws, alice.access_token) as listener,
        sse_stream(server.http, channel, headers=alice.headers) as stream,
    ):
        await listener.subscribe(channel)
        await listener.event(channel, "presence.join")
        body = json.dumps({"event": "room.message", "data": {"x": LONE}, "ts": timestamp()})
        publish = in_redis.register_script(PUBLISH_LUA)
        keys = [f"{prefix}:meta:{channel}", f"{prefix}:events:{channel}"]
        await publish(keys=keys, args=["e0", body, 1000, 600, f"{prefix}:ev:{channel}"])

        heard = await listener.event(channel, "room.message")
        assert heard["data"] == {"x": "\ufffd"}
        await listener.publish(channel, {"text": "after"})
        assert (await listener.event(channel, "room.message"))["data"]["data"] == {"text": "after"}
        assert (await first_message(stream))["data"] == {"x": "\ufffd"}
        assert (await first_message(stream))["data"]["data"] == {"text": "after"}

    events = await history(api, alice, channel)
    assert [e["data"] for e in events if e["event"] == "room.message"] == [
        {"x": "\ufffd"},
        {"connection_id": listener.connection_id, "user_id": alice.id, "data": {"text": "after"}},
    ]
    async with ws_peer(server.ws, alice.access_token) as late:
        await late.subscribe(channel, since={"offset": 0})
        assert (await late.event(channel, "room.message"))["data"] == {"x": "\ufffd"}
        assert (await late.event(channel, "room.message"))["data"]["data"] == {"text": "after"}
        replayed = await late.request({"type": "history", "channel": channel})
        said = [e["data"] for e in replayed["events"] if e["event"] == "room.message"]
        assert said[0] == {"x": "\ufffd"}


async def test_an_event_in_the_memory_log_with_a_lone_surrogate_breaks_no_reader(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    """In-process (embedded) broker: the event is published straight to the broker, bypassing
    every frame check; the history route and what a subscriber is sent (WebSocket text and SSE
    message, each encoded as the transport would) carry U+FFFD."""
    hub = app.state.hub
    channel = room()
    await hub.broker.publish(channel, "room.message", {"x": LONE}, timestamp())
    events = await history(client, account, channel)
    assert [e["data"] for e in events] == [{"x": "\ufffd"}]

    connection = await hub.connect(Principal(account.id, False), "ws")
    try:
        await hub.subscribe(connection, channel, None)
        await hub.broker.publish(channel, "room.message", {"y": [LONE]}, timestamp())
        sent = [connection.outbox.get_nowait() for _ in range(connection.outbox.qsize())]
        live = sent[-1]
        assert not isinstance(live, dict)
        assert json.loads(live.text.encode())["data"] == {"y": ["\ufffd"]}
        assert render(live).encode().count("\ufffd".encode()) == 1
    finally:
        await hub.disconnect(connection)


async def test_presence_and_rooms_show_members_only_to_members(
    deployment: Deployment, server: Server, api: httpx.AsyncClient
) -> None:
    alice = await sign_up(server.http)
    bob = await sign_up(server.http)
    carol = await sign_up(server.http)  # another tenant, in no room
    admin = await create_admin(server.http, deployment.workdir, deployment.env)
    channel = room()

    async def rooms(account: Account) -> dict[str, int]:
        response = await api.get("/v1/realtime/rooms", headers=account.headers)
        assert response.status_code == 200, response.text
        return {r["channel"]: r["members"] for r in response.json()["data"]}

    async def presence(peer: WsPeer) -> set[tuple[str, str]]:
        reply = await peer.request({"type": "presence", "channel": channel})
        assert reply["type"] == "presence", reply
        return {(m["user_id"], m["connection_id"]) for m in reply["members"]}

    async with (
        ws_peer(server.ws, alice.access_token) as a,
        ws_peer(server.ws, bob.access_token) as b,
        ws_peer(server.ws, carol.access_token) as c,
        ws_peer(server.ws, admin.access_token) as operator,
    ):
        await a.subscribe(channel)
        await b.subscribe(channel)
        await b.barrier()
        members = {(alice.id, a.connection_id), (bob.id, b.connection_id)}
        assert await presence(a) == await presence(b) == members
        assert await presence(operator) == members
        assert (await rooms(alice))[channel] == (await rooms(admin))[channel] == 2

        assert await presence(c) == set()
        assert channel not in await rooms(carol)

        await c.subscribe(channel)  # joining is announced, and then she sees who is there
        joined = await a.next(
            lambda f: f.get("event") == "presence.join" and f["data"]["user_id"] == carol.id
        )
        assert joined["data"]["connection_id"] == c.connection_id
        await c.barrier()
        assert await presence(c) == {*members, (carol.id, c.connection_id)}
        assert (await rooms(carol))[channel] == 3
