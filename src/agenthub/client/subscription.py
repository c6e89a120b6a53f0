"""Realtime value types and `Subscription`, the per-channel event stream."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

JsonDict = dict[str, Any]

DEFAULT_QUEUE_SIZE = 10_000


@dataclass(frozen=True)
class Position:
    """A place in a channel's log: the last offset seen, in the log's `epoch`."""

    offset: int
    epoch: str | None = None

    def to_json(self) -> JsonDict:
        value: JsonDict = {"offset": self.offset}
        if self.epoch is not None:
            value["epoch"] = self.epoch
        return value


@dataclass(frozen=True)
class Event:
    """One event of a channel (an `event` frame)."""

    channel: str
    offset: int
    epoch: str
    event: str
    data: JsonDict
    ts: str

    @property
    def position(self) -> Position:
        return Position(self.offset, self.epoch)

    @classmethod
    def from_frame(cls, frame: JsonDict) -> Event:
        return cls(
            channel=str(frame["channel"]),
            offset=int(frame["offset"]),
            epoch=str(frame["epoch"]),
            event=str(frame["event"]),
            data=dict(frame.get("data") or {}),
            ts=str(frame.get("ts", "")),
        )


@dataclass(frozen=True)
class RecoveryFailed:
    """Events of `channel` were lost (history exhausted, log restarted or the consumer fell
    behind): refetch the state by REST. Later items of the stream continue from here."""

    channel: str
    epoch: str
    offset: int


@dataclass(frozen=True)
class HistoryPage:
    """A `history` reply: the log's epoch and last offset, and the retained events asked for."""

    channel: str
    epoch: str
    offset: int
    recovered: bool
    events: list[Event] = field(default_factory=list)

    @classmethod
    def from_frame(cls, frame: JsonDict) -> HistoryPage:
        return cls(
            channel=str(frame["channel"]),
            epoch=str(frame["epoch"]),
            offset=int(frame["offset"]),
            recovered=bool(frame.get("recovered", True)),
            events=[Event.from_frame(item) for item in frame.get("events", [])],
        )


class Subscription:
    """An async iterator of `Event`s and `RecoveryFailed` notices for one channel.

    It remembers the last (epoch, offset) seen, so a resubscription after a reconnect resumes
    exactly there, and it drops events at or before that offset in the same epoch. Items wait
    in a queue of at most `maxsize`; when a slow consumer lets it fill up, the queued events
    are discarded and replaced by one `RecoveryFailed` (like the server's own slow-consumer
    policy), so the connection never stalls. Iteration ends after `unsubscribe()` or the
    client's `close()`, and raises if the subscription failed (e.g. `AuthenticationFailed`).
    """

    def __init__(
        self,
        channel: str,
        since: Position | None,
        unsubscribe: Callable[[Subscription], Awaitable[None]],
        maxsize: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self.channel = channel
        self.epoch: str | None = since.epoch if since else None
        self.offset: int | None = since.offset if since else None
        self._unsubscribe = unsubscribe
        self._maxsize = max(1, maxsize)
        self._items: deque[Event | RecoveryFailed] = deque()
        self._wakeup = asyncio.Event()
        self._done = False
        self._error: BaseException | None = None

    @property
    def position(self) -> Position | None:
        """Where a resubscription resumes (None until the server first answered)."""
        return None if self.offset is None else Position(self.offset, self.epoch)

    @property
    def closed(self) -> bool:
        return self._done

    def frame(self) -> JsonDict:
        """The `subscribe` frame resuming from the last position seen."""
        frame: JsonDict = {"type": "subscribe", "channel": self.channel}
        if self.offset is not None:
            frame["since"] = Position(self.offset, self.epoch).to_json()
        return frame

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event | RecoveryFailed:
        while not self._items:
            if self._done:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()

    async def unsubscribe(self) -> None:
        """Stop receiving this channel; iteration ends once the queue is drained."""
        await self._unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self._done:
            await self.unsubscribe()

    # -- fed by the client's reader ---------------------------------------------------------

    def _push(self, item: Event | RecoveryFailed) -> None:
        if len(self._items) >= self._maxsize:
            self._items.clear()
            if isinstance(item, Event):
                item = RecoveryFailed(item.channel, item.epoch, item.offset)
        self._items.append(item)
        self._wakeup.set()

    def _on_event(self, event: Event) -> None:
        if self._done:
            return
        if self.epoch == event.epoch and self.offset is not None and event.offset <= self.offset:
            return  # seen already (replayed after a resubscription)
        self.epoch, self.offset = event.epoch, event.offset
        self._push(event)

    def _on_subscribed(self, frame: JsonDict) -> None:
        """Apply a `subscribed` frame (an answer to (re)subscribing, or unsolicited)."""
        epoch, head = str(frame["epoch"]), int(frame["offset"])
        if frame.get("recovered", True) is False:
            # Lost events up to `head`. In the same epoch (or none given) the server still
            # replays what it retained after our offset; in a new epoch we resume at its head.
            same = self.epoch is None or self.epoch == epoch
            self.offset = min(self.offset, head) if same and self.offset is not None else head
            self.epoch = epoch
            self._push(RecoveryFailed(self.channel, epoch, head))
        elif self.offset is None:
            self.epoch, self.offset = epoch, head  # no replay: live events come after head
        else:
            self.epoch = epoch  # replayed events after our offset follow

    def _finish(self, error: BaseException | None = None) -> None:
        if not self._done:
            self._done = True
            self._error = error
            self._wakeup.set()
