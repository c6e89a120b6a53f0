"""`GET /v1/events`: one channel as Server-Sent Events, resumable with `Last-Event-ID`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from agenthub.core.errors import problem_responses
from agenthub.realtime.auth import StreamCredential, principal_of
from agenthub.realtime.broker import BrokerUnavailable, Event, dumps
from agenthub.realtime.channels import CHANNEL_PATTERN, ChannelRefused
from agenthub.realtime.connection import Connection, Outgoing
from agenthub.realtime.hub import Hub
from agenthub.realtime.router import Since, hub_of, position, refused, unavailable

router = APIRouter(tags=["realtime"])


@router.get(
    "/v1/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "An endless `text/event-stream`",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 403, 404, 422, 503),
    },
)
async def events(
    request: Request,
    credential: StreamCredential,
    channel: Annotated[str, Query(pattern=CHANNEL_PATTERN, max_length=140)],
    since: Since = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=90)] = None,
) -> StreamingResponse:
    """Events of one channel: first `subscribed`, then those after `Last-Event-ID` (or
    `since`; `0` for all retained history), then live ones; `: keep-alive` comments between.
    The stream ends when the credential expires or is revoked (reconnect with a fresh one)."""
    start = position(last_event_id, "Last-Event-ID") if last_event_id else position(since, "since")
    hub = hub_of(request)
    connection = await hub.connect(principal_of(credential), "sse")
    try:
        await hub.subscribe(connection, channel, start)
    except ChannelRefused as exc:
        await hub.disconnect(connection)
        raise refused(exc) from None
    except BrokerUnavailable:
        await hub.disconnect(connection)
        raise unavailable() from None
    return StreamingResponse(
        _stream(hub, connection),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def render(item: Outgoing) -> str:
    if isinstance(item, Event):
        return item.sse
    # No `id:` here: a client that drops before the replay must resume from where it was.
    return f"event: {item.get('type')}\ndata: {dumps(item)}\n\n"


async def _stream(hub: Hub, connection: Connection) -> AsyncIterator[str]:
    """The connection's outbox as SSE text until it closes or the client goes away (the
    generator is then cancelled or closed: its tasks end with it)."""
    keepalive = hub.settings.sse_keepalive_seconds
    closing = asyncio.create_task(connection.closing.wait())
    getting: asyncio.Task[Outgoing] | None = None
    try:
        while True:
            getting = getting or asyncio.create_task(connection.outbox.get())
            done, _ = await asyncio.wait(
                {getting, closing}, timeout=keepalive, return_when=asyncio.FIRST_COMPLETED
            )
            if getting in done:
                item, getting = getting.result(), None
                yield render(item)
            elif closing in done:
                return
            else:
                yield ": keep-alive\n\n"
    finally:
        tasks = [task for task in (getting, closing) if task is not None]
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*tasks, return_exceptions=True)
            await hub.disconnect(connection)
