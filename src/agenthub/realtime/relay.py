"""The event relay: this process's events reach the broker in the background, so no request
waits for the broker, and an event that cannot be published is never lost in silence.

`submit` queues events (a committed unit of work's, a job's streamed deltas, presence) and
returns at once. One task publishes them in the order submitted per channel (the channels of
a batch in parallel), each broker call bounded by `AGENTHUB_BROKER_TIMEOUT_SECONDS`.

A publish that fails or times out leaves a gap in its channel's log. Publishing the channel's
later events into the same log would keep its offsets contiguous, and every client resuming
from before the gap would be told `recovered: true`. So the channel is marked instead: its
events are dropped until the broker answers again, then its log is restarted with a new epoch
(`Broker.restart`): a client resuming from before gets `recovered: false` and refetches by
REST, and the channel's live subscribers on every node are told the same. An event that does
not fit in the queue marks its channel the same way. Marks are rows of `realtime_gaps` too,
so those of a process that died during an outage are applied by the next relay that starts;
a live relay restarts the channels it marked itself (a channel is restarted once per relay
that lost events of it).

The first failure also tells the relay that the broker is down: until a ping answers (tried
every `PROBE_SECONDS`), events are dropped and marked without waiting on the broker at all.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from typing import TypeVar

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agenthub.config import Settings
from agenthub.core.events import DomainEvent
from agenthub.core.metrics import count_event
from agenthub.realtime import gaps
from agenthub.realtime.broker import Broker, BrokerUnavailable, Event, JsonDict

log = structlog.get_logger("agenthub.realtime")

T = TypeVar("T")
PROBE_SECONDS = 1.0  # while the broker is down, how often it is pinged
BATCH = 256  # events taken from the queue at once
DRAIN_SECONDS = 5.0  # at shutdown, for publishing what is queued (then for marking the rest)
FAILURES = (BrokerUnavailable, TimeoutError)


@dataclass(frozen=True)
class _Item:
    seq: int  # the order of submission, over every channel
    event: DomainEvent
    published: asyncio.Future[Event] | None = None  # a sender waits for it (`publish`)


@dataclass
class _Gap:
    """A channel's lost events: every event of the channel submitted up to `upto` is dropped
    (published after the restart, an older event would follow the notice of its own loss)."""

    upto: int
    restarted: bool = False


class EventRelay:
    """Publishes submitted events in the background; see the module docstring."""

    def __init__(
        self, settings: Settings, broker: Broker, sessions: async_sessionmaker[AsyncSession]
    ) -> None:
        """`sessions` write the relay's marks in `realtime_gaps`: the process's database
        engine, without the `Database` that hands this relay its committed events."""
        self.broker = broker
        self._sessions = sessions
        self.id = secrets.token_hex(8)  # its rows of `realtime_gaps`
        self.timeout = settings.broker_timeout_seconds
        self.down = False  # the broker failed and has not answered a ping since
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(settings.realtime_relay_queue_size)
        self._submitted = 0
        self._taken = 0  # the `seq` of the last event taken from the queue
        self._gaps: dict[str, _Gap] = {}
        self._unsaved: set[str] = set()  # marked channels not yet (re)recorded in the database
        self._recorded = True  # `realtime_gaps` holds marks to apply
        self._started = False  # at the first repair every relay's marks are applied
        self._store_failed = False
        self._probe_at = 0.0
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def gaps(self) -> list[str]:
        """The channels whose log is still to be restarted."""
        return sorted(c for c, gap in self._gaps.items() if not gap.restarted)

    def submit(self, events: list[DomainEvent]) -> None:
        """Queue `events` for publishing (the `Database`'s publisher); never waits."""
        for event in events:
            self._submitted += 1
            try:
                self._queue.put_nowait(_Item(self._submitted, event))
            except asyncio.QueueFull:
                self._mark(event.channel, "relay queue full")

    async def publish(self, channel: str, event: str, data: JsonDict) -> Event:
        """Publish one event after those queued before it, and its place in the log: for a
        sender who is answered with it (a room message, an admin's broadcast). Raises
        `BrokerUnavailable`, having published nothing unless the broker timed out."""
        if self.down:
            raise BrokerUnavailable("broker unavailable")
        published: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._submitted += 1
        item = _Item(self._submitted, DomainEvent(channel, event, data), published)
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            raise BrokerUnavailable("too many events waiting for the broker") from None
        try:
            async with asyncio.timeout(2 * self.timeout):
                return await published
        except TimeoutError:
            raise BrokerUnavailable("broker timeout") from None

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.create_task(self._run(), name="event-relay")

    async def close(self) -> None:
        """Publish what is queued, for up to `DRAIN_SECONDS`; then drop and mark (and record)
        the rest, so that the next relay restarts those channels."""
        if self._task is None:
            return
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                await self._queue.join()
        except TimeoutError:
            self._closing = True
            with suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_SECONDS):
                    await self._queue.join()
        self._task.cancel()
        with suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if not self._queue.empty():
            log.warning("events_not_relayed", events=self._queue.qsize())

    # -- the relay task ------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wait: float | None = None
            if self._repair_due():
                wait = self._probe_at - loop.time()
                if wait <= 0:
                    await self._repair()
                    continue
            batch = await self._take(wait)
            if batch:
                await self._relay(batch)
            await self._save()
            self._forget_restarted()
            for _ in batch:
                self._queue.task_done()

    def _repair_due(self) -> bool:
        if self._closing:
            return False
        return self.down or self._recorded or any(not g.restarted for g in self._gaps.values())

    async def _take(self, wait: float | None) -> list[_Item]:
        """The next events (up to `BATCH`), once there is one or after `wait` seconds."""
        try:
            async with asyncio.timeout(wait):
                batch = [await self._queue.get()]
        except TimeoutError:
            return []
        while len(batch) < BATCH and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        self._taken = batch[-1].seq
        return batch

    async def _relay(self, batch: list[_Item]) -> None:
        by_channel: dict[str, list[_Item]] = {}
        for item in batch:
            by_channel.setdefault(item.event.channel, []).append(item)
        await asyncio.gather(*(self._relay_channel(c, i) for c, i in by_channel.items()))

    async def _relay_channel(self, channel: str, items: list[_Item]) -> None:
        for item in items:
            if item.published is not None and item.published.done():
                continue  # its sender gave up waiting and was told it failed
            gap = self._gaps.get(channel)
            if gap is not None and item.seq <= gap.upto:
                self._drop(item, None)
            elif self.down or self._closing or (gap is not None and not gap.restarted):
                self._drop(item, "shutting down" if self._closing else "broker unavailable")
            else:
                self._gaps.pop(channel, None)  # restarted: every event it covers is behind
                await self._publish(item)

    async def _publish(self, item: _Item) -> None:
        event = item.event
        try:
            published = await self._call(
                self.broker.publish(event.channel, event.event, event.data, event.ts)
            )
        except FAILURES as exc:
            self._failed(exc)
            self._drop(item, _reason(exc))
            return
        except Exception:  # a bug, not an outage: the event is lost all the same
            log.exception("event_not_published", channel=event.channel, domain_event=event.event)
            self._drop(item, "publish failed")
            return
        count_event(event.channel)
        if item.published is not None and not item.published.done():
            item.published.set_result(published)

    def _drop(self, item: _Item, reason: str | None) -> None:
        """Not published: its sender is told; otherwise its channel is marked (`reason`), or
        already was (None)."""
        if item.published is not None:
            if not item.published.done():
                item.published.set_exception(BrokerUnavailable(reason or "events were lost"))
        elif reason is not None:
            self._mark(item.event.channel, reason)

    async def _call(self, call: Awaitable[T]) -> T:
        async with asyncio.timeout(self.timeout):
            return await call

    def _failed(self, exc: Exception) -> None:
        if not self.down:
            self.down = True
            self._probe_at = asyncio.get_running_loop().time() + PROBE_SECONDS
            log.warning("broker_unavailable", error=_reason(exc), retry_seconds=PROBE_SECONDS)

    def _mark(self, channel: str, reason: str) -> None:
        """Drop every event of `channel` submitted so far; its log is restarted by the next
        repair (at once unless the broker is down)."""
        gap = self._gaps.get(channel)
        if gap is None or gap.restarted:
            log.warning("event_not_published", channel=channel, reason=reason)
            self._gaps[channel] = _Gap(self._submitted)
        else:
            gap.upto = self._submitted
        self._unsaved.add(channel)
        if not self.down:
            self._probe_at = 0.0

    def _forget_restarted(self) -> None:
        """Restarted gaps whose dropped events have all left the queue are over."""
        if self._gaps:
            over = [c for c, g in self._gaps.items() if g.restarted and g.upto <= self._taken]
            for channel in over:
                del self._gaps[channel]

    # -- restarting logs -----------------------------------------------------------------

    async def _repair(self) -> None:
        """Once the broker answers: restart the log of every channel this relay marked (at
        its start, of every channel recorded, a dead relay's too), then forget the records."""
        self._probe_at = asyncio.get_running_loop().time() + PROBE_SECONDS
        if self.down:
            try:
                await self._call(self.broker.ping())
            except FAILURES:
                return
            self.down = False
            log.info("broker_available")
        await self._save()
        owner = self.id if self._started else None
        recorded = await self._stored(lambda db: gaps.marked(db, owner))
        for channel in sorted({*self.gaps, *(m.channel for m in recorded or [])}):
            if not await self._restart(channel):
                return
        if recorded is not None:
            self._recorded, self._started = False, True
            await self._stored(lambda db: gaps.clear(db, recorded))

    async def _restart(self, channel: str) -> bool:
        try:
            epoch = await self._call(self.broker.restart(channel))
        except FAILURES as exc:
            self._failed(exc)
            return False
        gap = self._gaps.get(channel)
        if gap is not None:
            gap.restarted = True
        self._unsaved.discard(channel)
        log.info("channel_restarted", channel=channel, epoch=epoch)
        return True

    async def _save(self) -> None:
        """Record the channels marked since the last save."""
        if not self._unsaved:
            return
        channels, self._unsaved = self._unsaved, set()
        if await self._stored(lambda db: gaps.mark(db, self.id, channels)) is None:
            self._unsaved |= channels
        else:
            self._recorded = True

    async def _stored(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T | None:
        """`work(db)` in a transaction; None (said once per streak of failures) if it failed."""
        try:
            async with self._sessions.begin() as db:
                result = await work(db)
        except (SQLAlchemyError, OSError) as exc:
            if not self._store_failed:
                log.warning("realtime_gaps_unavailable", error=type(exc).__name__)
            self._store_failed = True
            return None
        self._store_failed = False
        return result


def _reason(exc: Exception) -> str:
    return "broker timeout" if isinstance(exc, TimeoutError) else str(exc)
