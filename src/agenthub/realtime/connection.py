"""One client's realtime connection (WebSocket or SSE) and its subscriptions, as the hub sees
them: a bounded outbox, a frame budget and the per-channel position of what was delivered."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal

from agenthub.core.events import timestamp
from agenthub.core.ids import new_id
from agenthub.db.base import utcnow
from agenthub.realtime.broker import Event
from agenthub.realtime.channels import Principal
from agenthub.realtime.protocol import subscribed_frame

if TYPE_CHECKING:
    from agenthub.realtime.hub import Hub

Outgoing = Event | dict[str, Any]
Transport = Literal["ws", "sse"]
CONNECTIONS_KEY = "connections"
"""The presence set listing every connection of the cluster (for the management routes)."""


class CloseCode(IntEnum):
    GOING_AWAY = 1001
    TOO_LARGE = 1009
    TRY_AGAIN_LATER = 1013
    SLOW_CONSUMER = 4008
    UNAUTHORIZED = 4401
    HEARTBEAT_TIMEOUT = 4408
    FLOOD = 4429


class FrameBudget:
    """At most `per_second` client frames a second; past twice that the client is flooding."""

    def __init__(self, per_second: int) -> None:
        self.per_second = per_second
        self._window = 0.0
        self._count = 0

    def take(self) -> Literal["ok", "over", "flood"]:
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._window, self._count = now, 0
        self._count += 1
        if self._count <= self.per_second:
            return "ok"
        return "over" if self._count <= 2 * self.per_second else "flood"


class Connection:
    """A connected client. `send` never blocks: a full outbox closes the connection (4008)
    instead of slowing the publisher or any other connection."""

    def __init__(
        self, principal: Principal, transport: Transport, *, queue_size: int, frames_per_second: int
    ) -> None:
        self.id = new_id("con")
        self.principal = principal
        self._expiry: asyncio.TimerHandle | None = None
        self.transport = transport
        self.connected_at = timestamp()
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue(queue_size)
        self.subscriptions: dict[str, Subscription] = {}
        self.budget = FrameBudget(frames_per_second)
        self.last_seen = time.monotonic()
        self.closing = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.authenticate(principal)

    @property
    def user_id(self) -> str:
        return self.principal.user_id

    def authenticate(self, principal: Principal) -> None:
        """Hold the connection with this credential from now on: it closes (4401) when the
        credential expires."""
        self.principal = principal
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        if principal.expires_at is not None and self.close_code is None:
            delay = (principal.expires_at - utcnow()).total_seconds()
            self._expiry = asyncio.get_running_loop().call_later(
                max(0.0, delay), self.close, CloseCode.UNAUTHORIZED, "token expired"
            )

    def send(self, item: Outgoing) -> None:
        if self.close_code is not None:
            return
        try:
            self.outbox.put_nowait(item)
        except asyncio.QueueFull:
            self.close(CloseCode.SLOW_CONSUMER, "send queue overflow; resubscribe from your offset")

    def close(self, code: int, reason: str) -> None:
        """Ask the transport to close; the first reason given wins."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.closing.set()
            if self._expiry is not None:
                self._expiry.cancel()

    def info(self, node: str) -> dict[str, Any]:
        return {
            "connection_id": self.id,
            "user_id": self.user_id,
            "transport": self.transport,
            "node": node,
            "connected_at": self.connected_at,
            "channels": sorted(self.subscriptions),
        }


@dataclass(frozen=True)
class Restart:
    """The channel's log was restarted with `epoch` after events were lost."""

    epoch: str


class Subscription:
    """A connection's subscription to one channel: delivers each event exactly once, in order.

    While `pending` is a list the subscription is catching up from history and live events
    (and restarts) wait there; `go_live` replays them past the position reached. A live event
    that skips an offset means live delivery missed something, so the subscription catches up
    again.
    """

    def __init__(self, hub: Hub, connection: Connection, channel: str) -> None:
        self.hub = hub
        self.connection = connection
        self.channel = channel
        self.epoch = ""
        self.offset = 0
        self.pending: list[Event | Restart] | None = []
        self.presence: dict[str, Any] | None = None

    def deliver(self, event: Event) -> None:
        if self.pending is not None:
            self.pending.append(event)
            return
        same_log = event.epoch == self.epoch
        if same_log and event.offset <= self.offset:
            return
        if (same_log and event.offset == self.offset + 1) or (not same_log and event.offset == 1):
            self.epoch, self.offset = event.epoch, event.offset
            self.connection.send(event)
            return
        self.pending = [event]
        self.hub.catch_up(self)

    def restart(self, epoch: str) -> None:
        """Tell the client that it missed events it cannot get back (an unsolicited
        `subscribed` with `recovered: false`) and follow the new log, unless already on it."""
        if self.pending is not None:
            self.pending.append(Restart(epoch))
            return
        if epoch == self.epoch:
            return
        self.epoch, self.offset = epoch, 0
        self.connection.send(subscribed_frame(self.channel, epoch, 0, False))

    def go_live(self, epoch: str, offset: int) -> None:
        self.epoch, self.offset = epoch, offset
        pending, self.pending = self.pending or [], None
        for item in pending:
            if isinstance(item, Restart):
                self.restart(item.epoch)
            else:
                self.deliver(item)

    @property
    def active(self) -> bool:
        return self.connection.subscriptions.get(self.channel) is self
