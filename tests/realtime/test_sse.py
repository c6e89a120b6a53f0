"""`GET /v1/events` (SSE) against real server processes, on both backends: the `subscribed`
preamble, live events with `id: <epoch>:<offset>`, resuming without loss or duplicates,
replay of retained history, stale epochs, keep-alive comments, and the errors before streaming."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message

from conftest import Deployment
from processes import Server
from realtime_support import SseMessage, SseReader, create_admin, sign_up, sse_stream, ws_peer
from support import Account, assert_problem

pytestmark = pytest.mark.slow


def room() -> str:
    return f"room:sse-{secrets.token_hex(4)}"


async def create_project(base: str, account: Account, name: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        response = await client.post("/v1/projects", json={"name": name}, headers=account.headers)
    assert response.status_code == 201, response.text
    project: dict[str, Any] = response.json()
    return project


async def subscribed(reader: SseReader) -> dict[str, Any]:
    """The stream's first message: `subscribed`, without an id (so it is never resumed from)."""
    first = await reader.message()
    assert first.event == "subscribed" and first.id is None, first
    frame = first.json()
    assert frame["type"] == "subscribed"
    return frame


def event_frame(message: SseMessage, channel: str) -> dict[str, Any]:
    """The event frame an SSE message carries, checked against its `id` and `event` lines."""
    frame = message.json()
    assert frame["type"] == "event" and frame["channel"] == channel, frame
    assert message.id == f"{frame['epoch']}:{frame['offset']}", message
    assert message.event == frame["event"]
    assert frame["ts"].endswith("Z")
    return frame


async def project_events(reader: SseReader, channel: str, count: int) -> list[dict[str, Any]]:
    """The next `count` messages, each a `project.created` event frame."""
    frames = [event_frame(await reader.message(), channel) for _ in range(count)]
    assert [f["event"] for f in frames] == ["project.created"] * count, frames
    return frames


async def test_stream_starts_subscribed_then_delivers_rest_and_room_events(server: Server) -> None:
    account = await sign_up(server.http)
    channel = f"user:{account.id}"
    async with sse_stream(server.http, channel, headers=account.headers) as reader:
        hello = await subscribed(reader)
        assert hello["channel"] == channel and hello["recovered"] is True
        assert hello["offset"] == 0  # a new user's channel has no events yet

        project = await create_project(server.http, account, "Apollo")

        frame = event_frame(await reader.message(), channel)
        assert (frame["event"], frame["offset"], frame["epoch"]) == (
            "project.created",
            1,
            hello["epoch"],
        )
        assert frame["data"]["id"] == project["id"] and frame["data"]["name"] == "Apollo"

    name = room()
    async with (
        sse_stream(server.http, name, headers=account.headers) as reader,
        ws_peer(server.ws, account.access_token) as peer,
    ):
        hello = await subscribed(reader)
        joined = event_frame(await reader.message(), name)  # the stream's own presence
        assert joined["event"] == "presence.join" and joined["offset"] == hello["offset"] + 1

        published = await peer.publish(name, {"text": "hi from ws"})

        frame = event_frame(await reader.message(), name)
        assert frame["event"] == "room.message"
        assert (frame["offset"], frame["epoch"]) == (published["offset"], published["epoch"])
        assert frame["offset"] == joined["offset"] + 1
        assert frame["data"]["data"] == {"text": "hi from ws"}
        assert frame["data"]["connection_id"] == peer.connection_id


async def test_resume_from_last_event_id_loses_and_repeats_nothing(server: Server) -> None:
    account = await sign_up(server.http)
    channel = f"user:{account.id}"
    async with sse_stream(server.http, channel, headers=account.headers) as reader:
        await subscribed(reader)
        for n in range(3):
            await create_project(server.http, account, f"before-{n}")
        seen = await project_events(reader, channel, 3)
    last_id = f"{seen[-1]['epoch']}:{seen[-1]['offset']}"

    for n in range(4):  # while nobody listens
        await create_project(server.http, account, f"away-{n}")

    headers = {**account.headers, "Last-Event-ID": last_id}
    async with sse_stream(server.http, channel, headers=headers) as reader:
        hello = await subscribed(reader)
        assert (hello["recovered"], hello["offset"], hello["epoch"]) == (True, 7, seen[0]["epoch"])
        missed = await project_events(reader, channel, 4)
        await create_project(server.http, account, "live")
        live = await project_events(reader, channel, 1)

    frames = seen + missed + live
    assert [f["offset"] for f in frames] == list(range(1, 9))  # none lost, none twice
    assert [f["data"]["name"] for f in missed + live] == [
        "away-0",
        "away-1",
        "away-2",
        "away-3",
        "live",
    ]


async def test_since_replays_retained_history(server: Server) -> None:
    account = await sign_up(server.http)
    channel = f"user:{account.id}"
    for n in range(3):
        await create_project(server.http, account, f"p{n}")

    async with sse_stream(
        server.http, channel, headers=account.headers, params={"since": "0"}
    ) as reader:
        hello = await subscribed(reader)
        assert (hello["recovered"], hello["offset"]) == (True, 3)
        frames = await project_events(reader, channel, 3)
        assert [(f["offset"], f["data"]["name"]) for f in frames] == [
            (1, "p0"),
            (2, "p1"),
            (3, "p2"),
        ]

    since = f"{frames[0]['epoch']}:2"
    async with sse_stream(
        server.http, channel, headers=account.headers, params={"since": since}
    ) as reader:
        hello = await subscribed(reader)
        assert hello["recovered"] is True
        assert [f["offset"] for f in await project_events(reader, channel, 1)] == [3]


async def test_stale_epoch_is_not_recovered_and_stream_goes_live(server: Server) -> None:
    account = await sign_up(server.http)
    channel = f"user:{account.id}"
    await create_project(server.http, account, "old")

    headers = {**account.headers, "Last-Event-ID": "0000stale:1"}
    async with sse_stream(server.http, channel, headers=headers) as reader:
        hello = await subscribed(reader)
        assert hello["recovered"] is False  # refetch by REST: the offset is from another log
        assert hello["epoch"] != "0000stale" and hello["offset"] == 1
        await create_project(server.http, account, "new")
        frames = await project_events(reader, channel, 1)  # live only, no replay of "old"
        assert (frames[0]["offset"], frames[0]["data"]["name"]) == (2, "new")


async def test_keep_alive_comments_between_events(deployment: Deployment) -> None:
    with deployment.node(AGENTHUB_SSE_KEEPALIVE_SECONDS="0.3") as node:
        account = await sign_up(node.http)
        channel = f"user:{account.id}"
        async with sse_stream(node.http, channel, headers=account.headers) as reader:
            await subscribed(reader)
            comments = [(await reader.next(wait=2)).comment for _ in range(2)]
            assert comments == ["keep-alive", "keep-alive"]

            await create_project(node.http, account, "after the silence")
            frames = await project_events(reader, channel, 1)
            assert frames[0]["data"]["name"] == "after the silence"


async def test_token_query_parameter_authenticates(server: Server) -> None:
    account = await sign_up(server.http)
    channel = f"user:{account.id}"
    async with sse_stream(
        server.http, channel, params={"token": account.access_token}
    ) as reader:  # no header: `EventSource` cannot set one
        assert (await subscribed(reader))["channel"] == channel
        await create_project(server.http, account, "via token")
        assert (await project_events(reader, channel, 1))[0]["data"]["name"] == "via token"


async def test_errors_before_streaming_are_problems(deployment: Deployment, server: Server) -> None:
    account = await sign_up(server.http)
    other = await sign_up(server.http)
    own = f"user:{account.id}"
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:

        async def get(
            params: dict[str, str], headers: dict[str, str] | None = None
        ) -> httpx.Response:
            return await client.get("/v1/events", params=params, headers=headers)

        assert_problem(await get({"channel": own}), 401)
        assert_problem(await get({"channel": own, "token": "not-a-token"}), 401)
        assert_problem(await get({"channel": f"user:{other.id}"}, account.headers), 404)
        assert_problem(await get({"channel": "session:ses_nope"}, account.headers), 404)
        assert_problem(await get({"channel": "system"}, account.headers), 403)
        assert_problem(await get({"channel": "bogus:x"}, account.headers), 422)
        assert_problem(await get({"channel": "room:white space"}, account.headers), 422)
        bad_id = {**account.headers, "Last-Event-ID": "epoch:not-an-offset"}
        body = assert_problem(await get({"channel": own}, bad_id), 422)
        assert "Last-Event-ID" in str(body)
        assert_problem(await get({"channel": own, "since": "-1"}, account.headers), 422)

    admin = await create_admin(server.http, deployment.workdir, deployment.env)
    async with sse_stream(server.http, "system", headers=admin.headers) as reader:
        assert (await subscribed(reader))["channel"] == "system"


async def test_a_closed_stream_leaves_nothing_behind(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    """The client goes away while the stream waits for its next event: the connection leaves
    the hub, and no task of the stream is left waiting (the suite fails on a pending task)."""
    incoming: list[Message] = [{"type": "http.request", "body": b"", "more_body": False}]
    streamed = asyncio.Event()
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop()
        await streamed.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body":
            streamed.set()

    channel = f"user:{account.id}"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},  # as uvicorn's HTTP protocols say
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/events",
        "raw_path": b"/v1/events",
        "root_path": "",
        "query_string": f"channel={channel}".encode(),
        "headers": [(b"host", b"testserver"), *account_headers(account)],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await asyncio.wait_for(app(scope, receive, send), 10)

    assert sent[0]["status"] == 200
    assert b"event: subscribed" in sent[1]["body"]
    connections = await client.get("/v1/realtime/connections", headers=account.headers)
    assert connections.json()["data"] == []


def account_headers(account: Account) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in account.headers.items()]
