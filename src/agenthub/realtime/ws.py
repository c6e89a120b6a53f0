"""`/v1/ws`: one WebSocket per client, any number of channels (docs/realtime.md)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from fastapi import APIRouter, WebSocket
from sqlalchemy.exc import SQLAlchemyError
from starlette.websockets import WebSocketDisconnect

from agenthub.config import Settings
from agenthub.core.metrics import RATE_LIMITED
from agenthub.realtime import frames
from agenthub.realtime.auth import authenticate, expires_in
from agenthub.realtime.broker import Event, dumps
from agenthub.realtime.connection import CloseCode, Connection
from agenthub.realtime.hub import Hub
from agenthub.web.ratelimit import RateLimiter

router = APIRouter()
log = structlog.get_logger("agenthub.realtime")


@router.websocket("/v1/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    await websocket.accept()
    if not hub.accepting:
        await websocket.close(CloseCode.GOING_AWAY, "server shutting down")
        return
    if not await _connect_allowed(websocket, hub.settings):
        await websocket.close(CloseCode.FLOOD, "too many connections; retry later")
        return
    try:
        principal = await authenticate(websocket, hub.settings, hub.database)
    except (SQLAlchemyError, OSError):
        log.warning("websocket_auth_unavailable", exc_info=True)
        await websocket.close(CloseCode.TRY_AGAIN_LATER, "database unavailable; retry")
        return
    if principal is None:
        await websocket.close(CloseCode.UNAUTHORIZED, "authentication failed")
        return
    connection = await hub.connect(principal, "ws")
    connection.send(
        {
            "type": "connected",
            "connection_id": connection.id,
            "user_id": principal.user_id,
            "heartbeat_interval": hub.settings.heartbeat_interval,
            "expires_in": expires_in(principal),
        }
    )
    tasks = [
        asyncio.create_task(_send(connection, websocket)),
        asyncio.create_task(_receive(hub, connection, websocket)),
        asyncio.create_task(connection.closing.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        receiver = tasks[1]
        client_left = (
            receiver.done()
            and not receiver.cancelled()
            and receiver.exception() is None
            and receiver.result()
        )
        await hub.disconnect(connection)
    if connection.close_code is not None and not client_left:
        # A client that stopped reading may never take the close frame: give up after a while.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                websocket.close(connection.close_code, connection.close_reason),
                hub.settings.ws_close_timeout_seconds,
            )


async def _connect_allowed(websocket: WebSocket, settings: Settings) -> bool:
    """Within `ws_connect_limit` handshakes per client IP (always, with limits disabled)."""
    if not settings.rate_limit_enabled:
        return True
    limiter: RateLimiter = websocket.app.state.limiter
    ip = websocket.client.host if websocket.client else "unknown"
    quota = await limiter.acquire(settings.ws_connect_limit, "ws-connect", ip)
    if not quota.allowed:
        RATE_LIMITED.labels("ws").inc()
    return quota.allowed


async def _send(connection: Connection, websocket: WebSocket) -> None:
    while True:
        item = await connection.outbox.get()
        await websocket.send_text(item.text if isinstance(item, Event) else dumps(item))


async def _receive(hub: Hub, connection: Connection, websocket: WebSocket) -> bool:
    """Read frames until the client leaves (True) or has to be closed (False)."""
    limit = hub.settings.ws_max_frame_bytes
    while True:
        try:
            message = await websocket.receive()
        except WebSocketDisconnect:
            return True
        if message["type"] == "websocket.disconnect":
            return True
        connection.last_seen = time.monotonic()
        data = message.get("text")
        if data is None:
            raw = message.get("bytes") or b""
            if len(raw) > limit:
                connection.close(CloseCode.TOO_LARGE, "frame too large")
                return False
            data = raw.decode("utf-8", errors="replace")
        if len(data) > limit or (len(data) * 4 > limit and len(data.encode()) > limit):
            connection.close(CloseCode.TOO_LARGE, f"frames are limited to {limit} bytes")
            return False
        verdict = connection.budget.take()
        if verdict == "flood":
            connection.close(CloseCode.FLOOD, "too many frames")
            return False
        if verdict == "over":
            limit_notice = f"At most {connection.budget.per_second} frames a second."
            frames.refuse(connection, data, "rate_limited", limit_notice)
            continue
        await frames.handle(hub, connection, data)
