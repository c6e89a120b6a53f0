"""The hub: this node's realtime connections and their subscriptions (catch-up from history,
then live events). Transports (`ws`, `sse`) feed it; the broker feeds it live events through
`on_event` and hands the internal channels' to the `watchers`; what this node publishes goes
through its `relay`; `upkeep` keeps the connections healthy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

from agenthub.config import Settings
from agenthub.core.events import DomainEvent, timestamp
from agenthub.db.engine import Database
from agenthub.realtime.broker import Broker, BrokerUnavailable, Event, History, JsonDict
from agenthub.realtime.channels import (
    ChannelRefused,
    Principal,
    authorize,
    is_room,
    sees_members,
)
from agenthub.realtime.connection import (
    CONNECTIONS_KEY,
    CloseCode,
    Connection,
    Subscription,
    Transport,
)
from agenthub.realtime.protocol import Position, subscribed_frame
from agenthub.realtime.relay import EventRelay
from agenthub.realtime.upkeep import Upkeep
from agenthub.realtime.watchers import Watchers

log = structlog.get_logger("agenthub.realtime")

CATCH_UP_RETRY_SECONDS = 1.0


@dataclass
class HubStats:
    events_received: int = 0
    events_delivered: int = 0
    slow_consumer_closes: int = 0
    flood_closes: int = 0
    heartbeat_closes: int = 0


class Hub:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        broker: Broker,
        relay: EventRelay,
        watchers: Watchers,
        *,
        node: str,
        on_websocket_open: Callable[[], None] = lambda: None,
        on_websocket_close: Callable[[int], None] = lambda code: None,
    ) -> None:
        """`on_websocket_open` and `on_websocket_close` (with the close code) are told of each
        WebSocket opened and closed (the app's monitor counts them)."""
        self.settings = settings
        self.database = database
        self.broker = broker
        self.relay = relay
        self.watchers = watchers
        self.node = node
        self.connections: dict[str, Connection] = {}
        self.stats = HubStats()
        self.accepting = True
        self._channels: dict[str, set[Subscription]] = {}
        self._node_subscriptions: dict[str, asyncio.Task[None]] = {}
        self._node_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._drained = asyncio.Event()
        self._on_websocket_open = on_websocket_open
        self._upkeep = Upkeep(self)
        self._on_websocket_close = on_websocket_close

    @property
    def channel_count(self) -> int:
        return len(self._channels)

    def has_subscribers(self, channel: str) -> bool:
        """Whether a connection of this node is subscribed to `channel`."""
        return bool(self._channels.get(channel))

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.start(self)
        self.relay.start()
        self._loops = self._upkeep.start()

    def shut_down(self) -> None:
        """Refuse new connections and close every open one with 1001 (going away)."""
        self.accepting = False
        for connection in list(self.connections.values()):
            connection.close(CloseCode.GOING_AWAY, "server shutting down")

    async def close(self) -> None:
        self.shut_down()
        if self.connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), self.settings.ws_close_timeout_seconds)
        for task in [*self._loops, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._loops, *self._tasks, return_exceptions=True)
        await self.relay.close()
        await self.broker.close()

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- connections -------------------------------------------------------------------

    async def connect(self, principal: Principal, transport: Transport) -> Connection:
        connection = Connection(
            principal,
            transport,
            queue_size=self.settings.ws_send_queue_size,
            frames_per_second=self.settings.ws_frames_per_second,
        )
        self._drained.clear()
        if transport == "ws":
            self._on_websocket_open()
        await self._register(connection)
        # Listed only now, with no await until the caller's first frame: the heartbeat loop
        # cannot put a `heartbeat` ahead of `connected` while the registration is in flight.
        self.connections[connection.id] = connection
        return connection

    async def disconnect(self, connection: Connection) -> None:
        """Forget a connection: its subscriptions end, rooms hear it leave."""
        if self.connections.pop(connection.id, None) is None:
            return
        if not self.connections:
            self._drained.set()
        connection.close(CloseCode.GOING_AWAY, "disconnected")
        if connection.transport == "ws":
            self._on_websocket_close(int(connection.close_code or CloseCode.GOING_AWAY))
        if connection.close_code == CloseCode.SLOW_CONSUMER:
            self.stats.slow_consumer_closes += 1
        elif connection.close_code == CloseCode.FLOOD:
            self.stats.flood_closes += 1
        for subscription in list(connection.subscriptions.values()):
            await self._end(subscription)
        with contextlib.suppress(BrokerUnavailable):
            await self.broker.remove_member(CONNECTIONS_KEY, connection.id)

    async def _register(self, connection: Connection) -> None:
        if self.relay.down:  # known unavailable: the presence loop lists it once it answers
            return
        with contextlib.suppress(BrokerUnavailable):
            await self.broker.set_members(
                CONNECTIONS_KEY,
                {connection.id: connection.info(self.node)},
                self.settings.presence_ttl_seconds,
            )

    # -- subscriptions -------------------------------------------------------------------

    async def authorize(self, who: Principal, channel: str) -> None:
        await authorize(self.database.sessions, who, channel)

    async def subscribe(
        self, connection: Connection, channel: str, since: Position | None, frame_id: Any = None
    ) -> None:
        """Send `subscribed`, then every retained event after `since`, then live events."""
        await self.authorize(connection.principal, channel)
        previous = connection.subscriptions.get(channel)
        subscription = Subscription(self, connection, channel)
        subscription.presence = previous.presence if previous else None
        connection.subscriptions[channel] = subscription
        if previous is not None:
            self._channels.get(channel, set()).discard(previous)
        self._channels.setdefault(channel, set()).add(subscription)
        try:
            if self.relay.down:  # known unavailable: answer now rather than after a timeout
                raise BrokerUnavailable("broker unavailable")
            await self._node_subscribe(channel)
            history = await self.broker.history(channel, None if since is None else since.offset)
        except BrokerUnavailable:
            if subscription.active:
                del connection.subscriptions[channel]
            self._detach(subscription)
            raise
        # Listed and present before the client hears `subscribed`; the join event itself waits
        # in `pending` and follows the replay.
        await self._register(connection)
        if is_room(channel) and subscription.presence is None:
            await self._join(subscription)
        recovered, missed = (
            (True, []) if since is None else history.since(since.offset, since.epoch)
        )
        connection.send(
            subscribed_frame(channel, history.epoch, history.offset, recovered, frame_id)
        )
        for event in missed if recovered else []:
            connection.send(event)
        subscription.go_live(history.epoch, history.offset)

    async def unsubscribe(self, connection: Connection, channel: str) -> bool:
        subscription = connection.subscriptions.get(channel)
        if subscription is None:
            return False
        await self._end(subscription)
        await self._register(connection)
        return True

    async def _end(self, subscription: Subscription) -> None:
        connection = subscription.connection
        if subscription.active:
            del connection.subscriptions[subscription.channel]
        self._detach(subscription)
        if subscription.presence is not None:
            info, subscription.presence = subscription.presence, None
            with contextlib.suppress(BrokerUnavailable):
                await self.broker.remove_member(subscription.channel, connection.id)
            left = {"connection_id": info["connection_id"], "user_id": info["user_id"]}
            self.relay.submit([DomainEvent(subscription.channel, "presence.leave", left)])

    async def _join(self, subscription: Subscription) -> None:
        connection = subscription.connection
        info = {
            "connection_id": connection.id,
            "user_id": connection.user_id,
            "joined_at": timestamp(),
        }
        subscription.presence = info
        try:
            await self.broker.set_members(
                subscription.channel, {connection.id: info}, self.settings.presence_ttl_seconds
            )
        except BrokerUnavailable as exc:  # the refresh loop records the presence later
            log.warning("presence_not_recorded", channel=subscription.channel, error=str(exc))
        join = DomainEvent(subscription.channel, "presence.join", info, info["joined_at"])
        self.relay.submit([join])

    def _detach(self, subscription: Subscription) -> None:
        channel = subscription.channel
        subscribers = self._channels.get(channel)
        if subscribers is None:
            return
        subscribers.discard(subscription)
        if not subscribers:
            del self._channels[channel]
            self._node_subscriptions.pop(channel, None)
            self.spawn(self._node_unsubscribe(channel))

    async def _node_subscribe(self, channel: str) -> None:
        """Make sure this node receives `channel` live; concurrent callers share one call."""
        task = self._node_subscriptions.get(channel)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.create_task(self._serialized(self.broker.subscribe, channel))
            self._node_subscriptions[channel] = task
        await asyncio.shield(task)

    async def _node_unsubscribe(self, channel: str) -> None:
        async with self._node_lock:
            if channel in self._channels or channel in self._node_subscriptions:
                return
            with contextlib.suppress(BrokerUnavailable):
                await self.broker.unsubscribe(channel)

    async def _serialized(self, call: Callable[[str], Coroutine[Any, Any, None]], arg: str) -> None:
        async with self._node_lock:
            await call(arg)

    # -- broker callbacks ----------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        self.stats.events_received += 1
        self.watchers.on_event(event)
        subscribers = self._channels.get(event.channel)
        if not subscribers:
            return
        for subscription in list(subscribers):
            subscription.deliver(event)
        self.stats.events_delivered += len(subscribers)

    def on_restart(self, channel: str, epoch: str) -> None:
        for subscription in list(self._channels.get(channel, ())):
            subscription.restart(epoch)

    def on_resync(self) -> None:
        # Revocations published while live delivery was down may be lost: check every
        # connection's credential again.
        if self.connections:
            self.spawn(self._upkeep.recheck(list(self.connections.values())))
        for subscribers in self._channels.values():
            for subscription in subscribers:
                if subscription.pending is None:
                    subscription.pending = []
                    self.catch_up(subscription, after_outage=True)

    def catch_up(self, subscription: Subscription, *, after_outage: bool = False) -> None:
        self.spawn(self._catch_up(subscription, after_outage))

    async def _catch_up(self, subscription: Subscription, after_outage: bool = False) -> None:
        """Fill a gap in live delivery from history; if the gap is beyond history, tell the
        client with an unsolicited `subscribed` frame whose `recovered` is false.

        A log that started over (new epoch) while the subscription was live lost nothing
        when it expired idle, so it is replayed from its start. After a broker outage a new
        epoch means the broker lost its logs, and publishes during the outage are gone: that
        is not recovered, and neither is a log restarted because events were lost."""
        while True:
            try:
                history = await self.broker.history(subscription.channel)
                break
            except BrokerUnavailable:
                if not subscription.active:
                    return
                await asyncio.sleep(CATCH_UP_RETRY_SECONDS)
        if not subscription.active:
            return
        recovered, missed = history.since(subscription.offset, subscription.epoch)
        expired = history.epoch != subscription.epoch and not history.lost
        if not recovered and expired and not after_outage:
            recovered, missed = history.since(0, None)
        connection = subscription.connection
        if recovered:
            for event in missed:
                connection.send(event)
        else:
            connection.send(
                subscribed_frame(subscription.channel, history.epoch, history.offset, False, None)
            )
        subscription.go_live(history.epoch, history.offset)

    # -- client actions ------------------------------------------------------------------

    async def publish_to_room(self, connection: Connection, channel: str, data: JsonDict) -> Event:
        if not is_room(channel):
            raise ChannelRefused("forbidden", "Clients publish to rooms only (room:{name}).")
        body = {"connection_id": connection.id, "user_id": connection.user_id, "data": data}
        return await self.relay.publish(channel, "room.message", body)

    async def history(
        self, who: Principal, channel: str, since: Position | None, limit: int
    ) -> tuple[History, bool, list[Event]]:
        """The channel's log position, whether nothing was lost since `since`, and up to
        `limit` events: the first ones after `since`, or the latest ones without it."""
        await self.authorize(who, channel)
        history = await self.broker.history(channel, 0 if since is None else since.offset)
        if since is None:
            return history, True, history.events[-limit:]
        recovered, events = history.since(since.offset, since.epoch)
        return history, recovered, events[:limit]

    async def presence(self, who: Principal, channel: str) -> list[JsonDict]:
        """The room's members, for its members and administrators; nobody for anyone else."""
        if not is_room(channel):
            raise ChannelRefused("forbidden", "Presence is kept for rooms only (room:{name}).")
        await self.authorize(who, channel)
        members = await self.broker.members(channel)
        if not sees_members(who, members):
            return []
        return sorted(members, key=lambda m: (str(m.get("joined_at")), str(m.get("connection_id"))))
