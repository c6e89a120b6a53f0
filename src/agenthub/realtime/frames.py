"""What the server does with each client frame of `/v1/ws`; every reply echoes the frame's
`id`, every failure is an `error` frame and the connection stays up."""

from __future__ import annotations

import json
from typing import Any

import structlog
from sqlalchemy.exc import SQLAlchemyError

from agenthub.core.text import LONE_SURROGATE, dotted, surrogate_in
from agenthub.realtime.auth import expires_in, principal_for
from agenthub.realtime.broker import BrokerUnavailable
from agenthub.realtime.channels import ChannelRefused
from agenthub.realtime.connection import Connection
from agenthub.realtime.hub import Hub
from agenthub.realtime.protocol import (
    Auth,
    ClientFrame,
    FrameError,
    Heartbeat,
    History,
    Ping,
    Presence,
    Publish,
    Subscribe,
    Unsubscribe,
    error_frame,
    id_of,
    parse_frame,
)

log = structlog.get_logger("agenthub.realtime")
_UNAVAILABLE = "Realtime is unavailable for a moment; retry shortly."


def decode(text: str) -> Any:
    """The frame's JSON value; `invalid_json` if it is not JSON (or nested deeper than the
    parser goes), `invalid_frame` if it holds a lone surrogate, which no client could read
    back."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError("invalid_json", "A frame is one JSON object.") from None
    if (path := surrogate_in(text, raw)) is not None:
        where = dotted(path) or "frame"
        raise FrameError("invalid_frame", f"{where}: {LONE_SURROGATE}.", id_of(raw))
    return raw


def refuse(connection: Connection, text: str, code: str, message: str) -> None:
    """Answer a frame that will not be acted on, echoing its `id` when it has one."""
    try:
        frame_id = id_of(decode(text))
    except FrameError as exc:
        frame_id = exc.frame_id
    connection.send(error_frame(code, message, frame_id))


async def handle(hub: Hub, connection: Connection, text: str) -> None:
    """Act on one frame; answer errors with an `error` frame."""
    frame_id: Any = None
    try:
        frame = parse_frame(decode(text))
        frame_id = frame.id
        await _dispatch(hub, connection, frame)
    except FrameError as exc:
        connection.send(error_frame(exc.code, exc.message, exc.frame_id))
    except ChannelRefused as exc:
        connection.send(error_frame(exc.code, exc.message, frame_id))
    except BrokerUnavailable:
        connection.send(error_frame("unavailable", _UNAVAILABLE, frame_id))
    except Exception:
        log.exception("frame_failed", connection_id=connection.id)
        connection.send(error_frame("internal", "The frame could not be handled.", frame_id))


async def _dispatch(hub: Hub, connection: Connection, frame: ClientFrame) -> None:
    who = connection.principal
    match frame:
        case Subscribe(channel=channel, since=since):
            await hub.subscribe(connection, channel, since, frame.id)
        case Unsubscribe(channel=channel):
            if not await hub.unsubscribe(connection, channel):
                raise FrameError("not_subscribed", f"Not subscribed to {channel!r}.", frame.id)
            connection.send({"type": "unsubscribed", "id": frame.id, "channel": channel})
        case Publish(channel=channel, data=data):
            event = await hub.publish_to_room(connection, channel, data)
            connection.send(
                {
                    "type": "published",
                    "id": frame.id,
                    "channel": channel,
                    "offset": event.offset,
                    "epoch": event.epoch,
                }
            )
        case Presence(channel=channel):
            members = await hub.presence(who, channel)
            connection.send(
                {"type": "presence", "id": frame.id, "channel": channel, "members": members}
            )
        case History(channel=channel, since=since, limit=limit):
            channel_log, recovered, events = await hub.history(who, channel, since, limit)
            connection.send(
                {
                    "type": "history",
                    "id": frame.id,
                    "channel": channel,
                    "epoch": channel_log.epoch,
                    "offset": channel_log.offset,
                    "recovered": recovered,
                    "events": [event.frame() for event in events],
                }
            )
        case Heartbeat():
            connection.send({"type": "heartbeat_ack", "id": frame.id})
        case Ping():
            connection.send({"type": "pong", "id": frame.id})
        case Auth(token=token):
            try:
                principal = await principal_for(token, hub.settings, hub.database)
            except (SQLAlchemyError, OSError):
                log.warning("frame_auth_unavailable", exc_info=True)
                raise FrameError("unavailable", _UNAVAILABLE, frame.id) from None
            if principal is None or principal.user_id != connection.user_id:
                raise FrameError(
                    "unauthorized",
                    "The token is invalid, expired or revoked, or not this connection's user's.",
                    frame.id,
                )
            connection.authenticate(principal)
            connection.send(
                {"type": "authenticated", "id": frame.id, "expires_in": expires_in(principal)}
            )
