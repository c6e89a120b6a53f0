"""Realtime management (docs/realtime.md): connections, rooms, channel history, stats, broadcast."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from agenthub.core.errors import (
    FieldError,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    ValidationFailed,
    problem_responses,
)
from agenthub.core.pagination import After, Limit, Page
from agenthub.realtime.broker import BrokerUnavailable, dumps
from agenthub.realtime.channels import (
    CHANNEL_PATTERN,
    ROOM_PREFIX,
    ChannelRefused,
    Principal,
    sees_members,
)
from agenthub.realtime.connection import CONNECTIONS_KEY
from agenthub.realtime.hub import Hub
from agenthub.realtime.protocol import MAX_HISTORY_LIMIT, Position, parse_position
from agenthub.realtime.schemas import (
    BroadcastIn,
    ChannelHistory,
    ConnectionOut,
    Published,
    RealtimeStats,
    RoomOut,
)
from agenthub.web.caller import AdminUser, CurrentUser

router = APIRouter(tags=["realtime"], responses=problem_responses(401, 422, 503))

Since = Annotated[
    str | None,
    Query(
        max_length=90,
        description="Events after `<epoch>:<offset>` (an SSE event id) or after an offset",
    ),
]


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def position(value: str | None, field: str) -> Position | None:
    """The parsed `since`/`Last-Event-ID`, or a 422 naming `field`."""
    if value is None:
        return None
    try:
        return parse_position(value)
    except ValueError as exc:
        raise ValidationFailed(
            f"{field} must be <epoch>:<offset> or an offset.",
            errors=[FieldError(field=field, message=str(exc))],
        ) from None


def refused(exc: ChannelRefused) -> NotFound | Forbidden | ValidationFailed:
    """The REST error for a channel the caller may not use."""
    if exc.code == "forbidden":
        return Forbidden(exc.message)
    if exc.code == "invalid_channel":
        return ValidationFailed(
            exc.message, errors=[FieldError(field="channel", message="invalid")]
        )
    return NotFound(exc.message)


def unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("Realtime is unavailable for a moment; retry shortly.")


@router.get("/v1/realtime/connections", response_model=Page[ConnectionOut])
async def list_connections(
    request: Request, user: CurrentUser, limit: Limit = 50, after: After = None
) -> Page[ConnectionOut]:
    """Open connections on every node: your own, or everyone's for administrators."""
    try:
        members = await hub_of(request).broker.members(CONNECTIONS_KEY)
    except BrokerUnavailable:
        raise unavailable() from None
    rows = sorted(
        (
            ConnectionOut.model_validate(m)
            for m in members
            if user.is_admin or m["user_id"] == user.id
        ),
        key=lambda c: c.connection_id,
    )
    rows = [c for c in rows if after is None or c.connection_id > after]
    has_more = len(rows) > limit
    page = rows[:limit]
    cursor = page[-1].connection_id if has_more else None
    return Page(data=page, has_more=has_more, next_cursor=cursor)


@router.get("/v1/realtime/rooms", response_model=Page[RoomOut])
async def list_rooms(request: Request, user: CurrentUser) -> Page[RoomOut]:
    """The rooms you are in (every room, for administrators), with the number of connections
    present."""
    broker = hub_of(request).broker
    who = Principal(user.id, user.is_admin)
    try:
        rooms = {key: await broker.members(key) for key in await broker.member_keys(ROOM_PREFIX)}
    except BrokerUnavailable:
        raise unavailable() from None
    listed = [
        RoomOut(channel=key, members=len(members))
        for key, members in sorted(rooms.items())
        if members and sees_members(who, members)
    ]
    return Page(data=listed, has_more=False, next_cursor=None)


@router.get(
    "/v1/realtime/channels/{channel}/history",
    response_model=ChannelHistory,
    responses=problem_responses(403, 404),
)
async def channel_history(
    request: Request,
    user: CurrentUser,
    channel: Annotated[str, Path(pattern=CHANNEL_PATTERN, max_length=140)],
    since: Since = None,
    limit: Annotated[int, Query(ge=1, le=MAX_HISTORY_LIMIT)] = 100,
) -> Response:
    """Retained events of a channel you may subscribe to: after `since`, or the latest ones."""
    start = position(since, "since")
    try:
        log, recovered, events = await hub_of(request).history(
            Principal(user.id, user.is_admin), channel, start, limit
        )
    except ChannelRefused as exc:
        raise refused(exc) from None
    except BrokerUnavailable:
        raise unavailable() from None
    # `ChannelHistory` with each event as subscribers get it: serialized once, valid Unicode.
    head = dumps(
        {"channel": channel, "epoch": log.epoch, "offset": log.offset, "recovered": recovered}
    )
    data = ",".join(event.text for event in events)
    return Response(f'{head[:-1]},"data":[{data}]}}', media_type="application/json")


@router.get("/v1/realtime/stats", response_model=RealtimeStats)
async def realtime_stats(request: Request, _: CurrentUser) -> RealtimeStats:
    """Connection counts (cluster and node) and this node's delivery counters."""
    hub = hub_of(request)
    try:
        cluster = len(await hub.broker.members(CONNECTIONS_KEY))
    except BrokerUnavailable:
        raise unavailable() from None
    stats = hub.stats
    return RealtimeStats(
        backend="redis" if hub.broker.name == "redis" else "memory",
        node=hub.node,
        connections=cluster,
        node_connections=len(hub.connections),
        node_channels=hub.channel_count,
        node_subscriptions=sum(len(c.subscriptions) for c in hub.connections.values()),
        events_received=stats.events_received,
        events_delivered=stats.events_delivered,
        slow_consumer_closes=stats.slow_consumer_closes,
        flood_closes=stats.flood_closes,
        heartbeat_closes=stats.heartbeat_closes,
    )


@router.post(
    "/v1/admin/realtime/broadcast",
    response_model=Published,
    tags=["admin"],
    responses=problem_responses(403),
)
async def broadcast(request: Request, _: AdminUser, body: BroadcastIn) -> Published:
    """Publish an event on any channel (for example `system.notification` on `system`)."""
    try:
        event = await hub_of(request).relay.publish(body.channel, body.event, body.data)
    except BrokerUnavailable:
        raise unavailable() from None
    return Published(
        channel=event.channel, event=event.event, offset=event.offset, epoch=event.epoch
    )
