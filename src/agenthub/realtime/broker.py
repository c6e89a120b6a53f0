"""The `Broker` interface: publish with offset assignment, live fan-out, bounded history and
presence. Backends: `memory` (one process) and `redis` (shared by every node).

Each channel is a log. `publish` assigns the next offset atomically, so two nodes publishing
to one channel never collide or reorder. The log keeps the last `history_size` events and
expires `history_ttl` seconds after it was last published to or read; its `epoch` changes
whenever the log starts over, so an offset from an earlier log is never mistaken for one of
the current log. `restart` starts a log over on purpose, after events meant for it were lost
(see `realtime.relay`). A publish that fails with `BrokerUnavailable` may still have happened.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import structlog

from agenthub.core.text import valid_text

log = structlog.get_logger("agenthub.realtime")

JsonDict = dict[str, Any]


def dumps(value: Any) -> str:
    """Compact JSON, as every frame is sent; a lone surrogate that got into a value anyway
    (written straight into Redis) is sent as U+FFFD instead of failing the send."""
    return valid_text(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


class BrokerUnavailable(Exception):
    """The broker's backing service (Redis) cannot be reached."""


@dataclass(frozen=True)
class Event:
    """One publication on a channel, with its place in the channel's log."""

    channel: str
    offset: int
    epoch: str
    event: str
    data: JsonDict
    ts: str

    def frame(self) -> JsonDict:
        return {
            "type": "event",
            "channel": self.channel,
            "offset": self.offset,
            "epoch": self.epoch,
            "event": self.event,
            "data": self.data,
            "ts": self.ts,
        }

    @cached_property
    def text(self) -> str:
        """The WebSocket frame, serialized once however many subscribers receive it."""
        return dumps(self.frame())

    @cached_property
    def sse(self) -> str:
        """The SSE message: `id: <epoch>:<offset>`, the event name and the frame as data."""
        return f"id: {self.epoch}:{self.offset}\nevent: {self.event}\ndata: {self.text}\n\n"


@dataclass(frozen=True)
class History:
    """What a channel's log holds now: its epoch, its last offset and the retained events
    after the requested offset, oldest first."""

    epoch: str
    offset: int
    events: list[Event] = field(default_factory=list)
    lost: bool = False
    """The log was restarted because events meant for it were lost: no position in an earlier
    log can be resumed here, not even from its start."""

    def since(self, offset: int, epoch: str | None) -> tuple[bool, list[Event]]:
        """Whether every event after (`epoch`, `offset`) is still retained, and those events.

        A different epoch, an offset beyond the log, or a gap between `offset` and the oldest
        retained event means the caller missed events it cannot get back.
        """
        if epoch is not None and epoch != self.epoch:
            return False, []
        if offset > self.offset:
            return False, []
        missed = [e for e in self.events if e.offset > offset]
        if offset < self.offset and (not missed or missed[0].offset != offset + 1):
            return False, missed
        return True, missed


class BrokerListener(Protocol):
    """What a node does with what the broker delivers."""

    def on_event(self, event: Event) -> None:
        """A live event on a channel this node subscribed to, in offset order per channel."""

    def on_resync(self) -> None:
        """Live delivery was interrupted (e.g. Redis reconnected): events may have been
        missed and subscribers should catch up from history."""

    def on_restart(self, channel: str, epoch: str) -> None:
        """`channel`'s log was restarted with `epoch` after events were lost; delivered in
        order with the channel's events."""


class Broker(Protocol):
    """Publish, subscribe, history and presence; one instance per process."""

    name: str

    async def start(self, listener: BrokerListener) -> None:
        """Begin delivering live events of subscribed channels to `listener`."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise `BrokerUnavailable` unless the backing service answers."""

    async def publish(self, channel: str, event: str, data: JsonDict, ts: str) -> Event:
        """Append to the channel's log with the next offset and fan the event out."""

    async def subscribe(self, channel: str) -> None:
        """Start live delivery of `channel` to this node; returns once it is active, so any
        event published afterwards is delivered."""

    async def unsubscribe(self, channel: str) -> None: ...

    async def restart(self, channel: str) -> str:
        """Start the channel's log over, empty, with a new epoch marked `lost`, and tell the
        listeners of every node (`on_restart`); returns the epoch."""

    async def history(self, channel: str, after: int | None = 0) -> History:
        """The channel's epoch, last offset and the retained events with an offset above
        `after` (None: no events, only the position). A log that does not exist is created,
        empty, with a new epoch."""

    async def set_members(self, key: str, members: Mapping[str, JsonDict], ttl: float) -> None:
        """Add or refresh members of a presence set; each expires `ttl` seconds from now."""

    async def remove_member(self, key: str, member_id: str) -> None: ...

    async def members(self, key: str) -> list[JsonDict]:
        """The unexpired members' info of a presence set."""

    async def member_keys(self, prefix: str) -> list[str]:
        """The presence sets whose key starts with `prefix` and that have members."""
