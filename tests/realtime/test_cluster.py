"""Two `agenthub serve` nodes sharing PostgreSQL and Redis form one realtime cluster: events,
room messages, resume positions, presence and the connection list cross nodes, and offsets
stay unique and ordered when both nodes publish at once. Redis deployments only: the
in-process broker is one node by design."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from conftest import Deployment
from processes import Server
from realtime_support import Frame, WsPeer, receive, sign_up, ws_peer
from support import Account

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("deployment", ["redis"], indirect=True),
]

PUBLISHES = 200  # per publisher in the concurrency test


@pytest.fixture(scope="module")
def nodes(deployment: Deployment) -> Iterator[tuple[Server, Server]]:
    """Nodes A and B of one Redis deployment (frame limit raised for the publishers)."""
    with ExitStack() as stack:
        a, b = (
            stack.enter_context(deployment.node(AGENTHUB_WS_FRAMES_PER_SECOND="1000"))
            for _ in range(2)
        )
        yield a, b


def room() -> str:
    return f"room:cluster-{secrets.token_hex(4)}"


async def rest(base: str, account: Account, method: str, url: str, body: Frame) -> Frame:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        response = await client.request(method, url, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    result: Frame = response.json()
    return result


async def get_json(base: str, account: Account, url: str) -> Any:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        response = await client.get(url, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def test_rest_writes_on_b_reach_subscribers_on_a(nodes: tuple[Server, Server]) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    own = f"user:{account.id}"
    async with ws_peer(a.ws, account.access_token) as peer:
        await peer.subscribe(own)

        project = await rest(b.http, account, "POST", "/v1/projects", {"name": "Cross"})
        frame = await peer.event(own)
        assert frame["event"] == "project.created" and frame["data"]["id"] == project["id"]

        created = await rest(b.http, account, "POST", "/v1/sessions", {"agent_type": "primary"})
        session_id = created["session"]["id"]
        frame = await peer.event(own)
        assert frame["event"].startswith("session.") and frame["data"]["id"] == session_id

        await peer.subscribe(f"session:{session_id}")
        message = await rest(
            b.http,
            account,
            "POST",
            f"/v1/sessions/{session_id}/messages",
            {"role": "user", "content": "written on B"},
        )
        frame = await peer.event(f"session:{session_id}", "message.created")
        assert frame["data"]["id"] == message["id"]
        assert frame["data"]["content"] == "written on B"
        updated = await peer.event(own, "session.updated")  # the owner hears of it too
        assert updated["data"]["id"] == session_id


async def test_room_messages_cross_nodes_both_ways(nodes: tuple[Server, Server]) -> None:
    a, b = nodes
    alice = await sign_up(a.http)
    bob = await sign_up(b.http)
    name = room()
    async with ws_peer(a.ws, alice.access_token) as on_a, ws_peer(b.ws, bob.access_token) as on_b:
        await on_a.subscribe(name)
        await on_b.subscribe(name)

        from_b = await on_b.publish(name, {"text": "from B"})
        frame = await on_a.event(name, "room.message")  # B -> A
        assert frame["data"]["data"] == {"text": "from B"}
        assert frame["data"]["user_id"] == bob.id and frame["offset"] == from_b["offset"]

        from_a = await on_a.publish(name, {"text": "from A"})
        own, frame = [await on_b.event(name, "room.message") for _ in range(2)]  # A -> B
        assert own["offset"] == from_b["offset"]  # a publisher hears its own message too
        assert frame["data"]["data"] == {"text": "from A"}
        assert frame["data"]["user_id"] == alice.id and frame["offset"] == from_a["offset"]
        assert from_a["offset"] == from_b["offset"] + 1 and from_a["epoch"] == from_b["epoch"]
        assert (await on_a.event(name, "room.message"))["offset"] == from_a["offset"]


async def test_resume_on_b_from_a_position_gets_exactly_the_missed_events(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    own = f"user:{account.id}"
    async with ws_peer(a.ws, account.access_token) as peer:
        await peer.subscribe(own)
        await rest(a.http, account, "POST", "/v1/projects", {"name": "seen"})
        seen = await peer.event(own)
    position = {"offset": seen["offset"], "epoch": seen["epoch"]}

    names = ["away-a1", "away-b1", "away-a2", "away-b2"]
    for name in names:  # while the client is away, on both nodes
        node = a if name.startswith("away-a") else b
        await rest(node.http, account, "POST", "/v1/projects", {"name": name})

    async with ws_peer(b.ws, account.access_token) as peer:
        hello = await peer.subscribe(own, since=position)
        assert (hello["recovered"], hello["epoch"]) == (True, seen["epoch"])
        assert hello["offset"] == seen["offset"] + len(names)
        missed = [await peer.event(own) for _ in names]
        await rest(a.http, account, "POST", "/v1/projects", {"name": "live"})
        live = await peer.event(own)
        await peer.barrier()
        assert [f for f in peer.backlog if f["type"] == "event"] == []  # nothing twice

    frames = [*missed, live]
    assert [f["offset"] for f in frames] == list(range(seen["offset"] + 1, live["offset"] + 1))
    assert [f["data"]["name"] for f in frames] == [*names, "live"]


async def test_presence_and_connections_span_both_nodes(nodes: tuple[Server, Server]) -> None:
    a, b = nodes
    alice = await sign_up(a.http)
    bob = await sign_up(a.http)
    name = room()
    async with (
        ws_peer(a.ws, alice.access_token) as on_a,
        ws_peer(b.ws, bob.access_token) as on_b,
    ):
        await on_a.subscribe(name)
        await on_b.subscribe(name)
        await on_b.barrier()

        for peer in (on_a, on_b):
            reply = await peer.request({"type": "presence", "channel": name})
            members = {m["connection_id"]: m["user_id"] for m in reply["members"]}
            assert members == {on_a.connection_id: alice.id, on_b.connection_id: bob.id}
        for node in (a, b):
            rooms = await get_json(node.http, alice, "/v1/realtime/rooms")
            assert {"channel": name, "members": 2} in rooms["data"]

        node_a = (await get_json(a.http, alice, "/v1/realtime/stats"))["node"]
        listed = await get_json(b.http, alice, "/v1/realtime/connections")
        assert [(c["connection_id"], c["node"]) for c in listed["data"]] == [
            (on_a.connection_id, node_a)
        ]
        assert listed["data"][0]["channels"] == [name]
        stats_b = await get_json(b.http, alice, "/v1/realtime/stats")
        assert stats_b["node"] != node_a and stats_b["connections"] >= 2


async def publish_burst(peer: WsPeer, channel: str, tag: str) -> list[Frame]:
    """Send `PUBLISHES` publish frames back to back; the `published` replies, in order."""
    for n in range(PUBLISHES):
        frame = {"type": "publish", "id": n, "channel": channel, "data": {"by": tag, "n": n}}
        await peer.ws.send(json.dumps(frame))
    replies = [await receive(peer.ws, wait=10) for _ in range(PUBLISHES)]
    assert [(r["type"], r["id"]) for r in replies] == [("published", n) for n in range(PUBLISHES)]
    return replies


async def collect(peer: WsPeer, channel: str, count: int) -> list[Frame]:
    return [await peer.event(channel, "room.message", wait=10) for _ in range(count)]


async def test_concurrent_publishers_on_both_nodes_get_unique_ordered_offsets(
    nodes: tuple[Server, Server],
) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    token = account.access_token
    name = room()
    async with (
        ws_peer(a.ws, token) as watcher_a,
        ws_peer(b.ws, token) as watcher_b,
        ws_peer(a.ws, token) as publisher_a,
        ws_peer(b.ws, token) as publisher_b,
    ):
        start = (await watcher_a.subscribe(name))["offset"]
        await watcher_b.subscribe(name)
        for watcher in (watcher_a, watcher_b):
            await watcher.barrier()  # both joined: what follows is room messages only

        total = 2 * PUBLISHES
        replies_a, replies_b, seen_a, seen_b = await asyncio.gather(
            publish_burst(publisher_a, name, "A"),
            publish_burst(publisher_b, name, "B"),
            collect(watcher_a, name, total),
            collect(watcher_b, name, total),
        )

    offsets = sorted(r["offset"] for r in replies_a + replies_b)
    first = offsets[0]
    assert offsets == list(range(first, first + total))  # unique, no gap
    assert first == start + 3  # after the two watchers' presence.join events
    for replies in (replies_a, replies_b):
        assert [r["offset"] for r in replies] == sorted(r["offset"] for r in replies)

    def sequence(frames: list[Frame]) -> list[tuple[int, str, int]]:
        return [(f["offset"], f["data"]["data"]["by"], f["data"]["data"]["n"]) for f in frames]

    assert sequence(seen_a) == sequence(seen_b)  # both nodes deliver the same log
    assert [f["offset"] for f in seen_a] == offsets  # strictly consecutive, in order
    for tag in ("A", "B"):
        assert [n for _, by, n in sequence(seen_a) if by == tag] == list(range(PUBLISHES))
