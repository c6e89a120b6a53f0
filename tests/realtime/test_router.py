"""Realtime management routes against real server processes, on both backends: connections,
rooms, admin broadcast, channel history and stats."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from conftest import Deployment
from processes import Server
from realtime_support import eventually, make_admin, sign_up, sse_stream, ws_peer
from support import Account, assert_problem

pytestmark = pytest.mark.slow


def room() -> str:
    return f"room:mgmt-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def admin(deployment: Deployment, server: Server) -> Account:
    return make_admin(server.http, deployment.workdir, deployment.env)


async def get_json(client: httpx.AsyncClient, url: str, account: Account, **params: Any) -> Any:
    response = await client.get(url, params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def connections(
    client: httpx.AsyncClient, account: Account, **params: Any
) -> dict[str, dict[str, Any]]:
    page = await get_json(client, "/v1/realtime/connections", account, **params)
    return {c["connection_id"]: c for c in page["data"]}


async def room_members(client: httpx.AsyncClient, account: Account, channel: str) -> int | None:
    page = await get_json(client, "/v1/realtime/rooms", account)
    assert page["has_more"] is False
    found = [r["members"] for r in page["data"] if r["channel"] == channel]
    return found[0] if found else None


async def test_connections_lists_own_with_transport_and_channels(
    server: Server, api: httpx.AsyncClient, admin: Account
) -> None:
    alice = await sign_up(server.http)
    bob = await sign_up(server.http)
    name = room()
    async with (
        ws_peer(server.ws, alice.access_token) as ws,
        ws_peer(server.ws, bob.access_token) as bobs,
        sse_stream(server.http, f"user:{alice.id}", headers=alice.headers) as sse,
    ):
        await sse.message()  # subscribed: the stream is registered
        await ws.subscribe(f"user:{alice.id}")
        await ws.subscribe(name)
        await ws.barrier()  # the subscriptions are registered

        mine = await connections(api, alice)
        assert bobs.connection_id not in mine
        assert mine[ws.connection_id]["transport"] == "ws"
        assert mine[ws.connection_id]["channels"] == sorted([f"user:{alice.id}", name])
        assert mine[ws.connection_id]["user_id"] == alice.id
        assert mine[ws.connection_id]["connected_at"].endswith("Z")
        (stream,) = [c for c in mine.values() if c["transport"] == "sse"]
        assert stream["channels"] == [f"user:{alice.id}"]
        assert set(mine) == {ws.connection_id, stream["connection_id"]}

        everyone = await connections(api, admin, limit=200)
        assert {ws.connection_id, stream["connection_id"], bobs.connection_id} <= set(everyone)
        assert everyone[bobs.connection_id]["user_id"] == bob.id

        first = await get_json(api, "/v1/realtime/connections", alice, limit=1)
        assert len(first["data"]) == 1 and first["has_more"] is True
        rest = await get_json(
            api, "/v1/realtime/connections", alice, limit=1, after=first["next_cursor"]
        )
        assert rest["has_more"] is False and rest["next_cursor"] is None
        assert {first["data"][0]["connection_id"], rest["data"][0]["connection_id"]} == set(mine)

    async def gone() -> bool:
        return not await connections(api, alice)

    assert await eventually(gone)  # closed WebSocket and SSE stream are forgotten


async def test_rooms_count_members_until_they_leave(
    server: Server, api: httpx.AsyncClient, admin: Account
) -> None:
    alice = await sign_up(server.http)
    bob = await sign_up(server.http)
    name = room()
    async with ws_peer(server.ws, alice.access_token) as first:
        async with ws_peer(server.ws, bob.access_token) as second:
            await first.subscribe(name)
            await second.subscribe(name)
            await second.barrier()
            assert await room_members(api, alice, name) == 2

            await first.request({"type": "unsubscribe", "channel": name})
            assert await room_members(api, bob, name) == 1
            assert await room_members(api, alice, name) is None  # listed to members only
            assert await room_members(api, admin, name) == 1

        async def empty() -> bool:
            return await room_members(api, admin, name) is None

        assert await eventually(empty)  # the second one closed its connection


async def test_admin_broadcast_reaches_system_and_user_subscribers(
    server: Server, api: httpx.AsyncClient, admin: Account
) -> None:
    user = await sign_up(server.http)
    async with (
        ws_peer(server.ws, admin.access_token) as operator,
        ws_peer(server.ws, user.access_token) as listener,
    ):
        await operator.subscribe("system")
        await listener.subscribe(f"user:{user.id}")

        notice = {"channel": "system", "event": "system.notification", "data": {"text": "hi"}}
        response = await api.post(
            "/v1/admin/realtime/broadcast", json=notice, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        published = response.json()
        assert published["channel"] == "system" and published["event"] == "system.notification"
        frame = await operator.event("system")
        assert (frame["event"], frame["data"], frame["offset"], frame["epoch"]) == (
            "system.notification",
            {"text": "hi"},
            published["offset"],
            published["epoch"],
        )

        personal = {"channel": f"user:{user.id}", "event": "system.notification", "data": {}}
        response = await api.post(
            "/v1/admin/realtime/broadcast", json=personal, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        frame = await listener.event(f"user:{user.id}")
        assert (frame["event"], frame["offset"]) == ("system.notification", 1)
        assert response.json()["offset"] == 1

    refused = await api.post("/v1/admin/realtime/broadcast", json=notice, headers=user.headers)
    assert_problem(refused, 403)
    for bad in (
        {**notice, "event": "Not An Event"},
        {**notice, "event": "noseparator"},
        {**notice, "channel": "nowhere:x"},
        {**notice, "data": "not an object"},
    ):
        response = await api.post("/v1/admin/realtime/broadcast", json=bad, headers=admin.headers)
        assert_problem(response, 422)


async def test_channel_history_with_since_and_limit(server: Server, api: httpx.AsyncClient) -> None:
    alice = await sign_up(server.http)
    bob = await sign_up(server.http)
    name = room()
    async with ws_peer(server.ws, alice.access_token) as peer:
        published = [await peer.publish(name, {"n": n}) for n in range(5)]
    epoch = published[0]["epoch"]
    url = f"/v1/realtime/channels/{name}/history"

    latest = await get_json(api, url, bob, limit=2)  # any signed-in user may read a room
    assert (latest["channel"], latest["epoch"], latest["offset"]) == (name, epoch, 5)
    assert latest["recovered"] is True
    assert [e["data"]["data"]["n"] for e in latest["data"]] == [3, 4]
    assert {e["event"] for e in latest["data"]} == {"room.message"}

    after = await get_json(api, url, alice, since=f"{epoch}:1", limit=2)
    assert [e["offset"] for e in after["data"]] == [2, 3]
    assert after["recovered"] is True
    everything = await get_json(api, url, alice, since="0")
    assert [e["offset"] for e in everything["data"]] == [1, 2, 3, 4, 5]
    assert everything["data"][0] == {
        "type": "event",
        "channel": name,
        "offset": 1,
        "epoch": epoch,
        "event": "room.message",
        "data": {"connection_id": peer.connection_id, "user_id": alice.id, "data": {"n": 0}},
        "ts": everything["data"][0]["ts"],
    }

    stale = await get_json(api, url, alice, since="0000stale:2")
    assert (stale["recovered"], stale["data"], stale["offset"]) == (False, [], 5)
    beyond = await get_json(api, url, alice, since=f"{epoch}:99")
    assert beyond["recovered"] is False

    own = await get_json(api, f"/v1/realtime/channels/user:{alice.id}/history", alice)
    assert own["recovered"] is True and own["data"] == []
    theirs = await api.get(f"/v1/realtime/channels/user:{alice.id}/history", headers=bob.headers)
    assert_problem(theirs, 404)
    assert_problem(await api.get("/v1/realtime/channels/system/history", headers=bob.headers), 403)
    assert_problem(await api.get(url, params={"since": "x:y"}, headers=bob.headers), 422)
    assert_problem(await api.get(url, params={"limit": 0}, headers=bob.headers), 422)
    assert_problem(await api.get(url), 401)


async def test_stats_count_connections_and_name_the_backend(deployment: Deployment) -> None:
    with deployment.node() as node:  # a node of its own: its counts are this test's
        account = await sign_up(node.http)
        async with httpx.AsyncClient(base_url=node.http, timeout=10) as api:

            async def stats() -> dict[str, Any]:
                body: dict[str, Any] = await get_json(api, "/v1/realtime/stats", account)
                return body

            idle = await stats()
            assert idle["backend"] == deployment.backend
            assert (idle["node_connections"], idle["node_subscriptions"]) == (0, 0)
            name = room()
            async with (
                ws_peer(node.ws, account.access_token) as first,
                ws_peer(node.ws, account.access_token) as second,
            ):
                await first.subscribe(name)
                await first.subscribe(f"user:{account.id}")
                await second.subscribe(name)
                await second.publish(name, {"text": "counted"})
                await first.event(name, "room.message")
                await second.event(name, "room.message")

                busy = await stats()
                assert busy["node"] == idle["node"]
                assert busy["node_connections"] == 2 and busy["connections"] >= 2
                assert busy["node_subscriptions"] == 3
                assert busy["node_channels"] == 2
                assert busy["events_delivered"] >= idle["events_delivered"] + 2

            async def drained() -> bool:  # a closed connection's cleanup ends shortly after
                now = await stats()
                counts = ("node_connections", "node_subscriptions", "node_channels")
                return all(now[count] == 0 for count in counts)

            assert await eventually(drained)
