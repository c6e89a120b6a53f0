"""`EventRelay` on a real database (SQLite and PostgreSQL) and a real broker: the in-process
one, or Redis (behind `CuttingProxy` when the test makes it hang).

A publish that times out marks its channel, in memory and in `realtime_gaps`; once the broker
answers, the channel's log starts over with a new epoch marked lost, another node hears of it,
and the mark is cleared. A mark left by a process that died is applied by the next relay at
start-up. Without failures, events arrive in order per channel, and a full queue marks the
channels of the events it could not take."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from agenthub.core.events import DomainEvent
from agenthub.core.logging import configure_logging
from agenthub.db.engine import Database
from agenthub.realtime import gaps
from agenthub.realtime.broker import Broker, BrokerUnavailable
from agenthub.realtime.relay import EventRelay
from agenthub.wiring import create_broker
from conftest import make_settings
from private_servers import CuttingProxy
from realtime_support import Recorder, drop_prefix, eventually, redis_url, require_redis

TIMEOUT = 1.0  # each broker call, in these tests
WAIT = 10.0


@dataclass
class Rig:
    """A started relay with its broker, and `watcher`: another node (Redis) or the same
    broker (memory: one process), whose listener is `recorder`."""

    database: Database
    broker: Broker
    relay: EventRelay
    watcher: Broker
    recorder: Recorder

    async def marks(self) -> set[str]:
        """The channels of every mark recorded."""
        async with self.database.transaction() as db:
            return {mark.channel for mark in await gaps.marked(db)}

    async def until(self, predicate: Callable[[], bool]) -> None:
        async def holds() -> bool:
            return predicate()

        await eventually(holds, WAIT)

    async def repaired(self) -> None:
        """Wait until the broker is back, every log restarted and every mark cleared."""

        async def cleared() -> bool:
            return not self.relay.down and not self.relay.gaps and not await self.marks()

        await eventually(cleared, WAIT)


@asynccontextmanager
async def rig(
    database_url: str, tmp_path: Path, redis: str | None = None, **overrides: Any
) -> AsyncIterator[Rig]:
    """A `Rig` on the in-process broker, or on Redis at `redis` (the watcher on the shared
    Redis directly, under the same prefix); `realtime_gaps` is emptied at the end."""
    prefix = f"test{secrets.token_hex(4)}"
    settings = make_settings(
        database_url,
        tmp_path,
        redis_url=redis,
        redis_prefix=prefix,
        broker_timeout_seconds=TIMEOUT,
        **overrides,
    )
    configure_logging(settings.log_level, settings.log_format)  # as a server logs: JSON lines
    database = Database(settings)
    broker = create_broker(settings)
    watcher = broker
    if redis is not None:
        watcher = create_broker(settings.model_copy(update={"redis_url": redis_url()}))
    recorder = Recorder()
    await watcher.start(recorder)
    relay = EventRelay(settings, broker, database.sessions)
    try:
        yield Rig(database, broker, relay, watcher, recorder)
    finally:
        await relay.close()
        await broker.close()
        if watcher is not broker:
            await watcher.close()
        async with database.transaction() as db:
            await gaps.clear(db, await gaps.marked(db))
        await database.dispose()
        if redis is not None:
            drop_prefix(prefix)


@pytest.fixture(params=["memory", "redis"])
def redis(request: pytest.FixtureRequest) -> str | None:
    """The Redis URL of the broker under test (None: the in-process broker)."""
    if request.param == "memory":
        return None
    require_redis()
    return redis_url()


@pytest.fixture
async def proxy() -> AsyncIterator[CuttingProxy]:
    require_redis()
    target = urlsplit(redis_url())
    async with CuttingProxy(target.hostname or "127.0.0.1", target.port or 6379) as running:
        yield running


def through(proxy: CuttingProxy) -> str:
    return urlsplit(redis_url())._replace(netloc=f"127.0.0.1:{proxy.port}").geturl()


def ticks(channel: str, numbers: range) -> list[DomainEvent]:
    return [DomainEvent(channel, "tick", {"n": n}) for n in numbers]


async def numbers(broker: Broker, channel: str) -> list[int]:
    """The `n` of each event in the channel's current log, in offset order."""
    return [e.data["n"] for e in (await broker.history(channel)).events]


async def test_a_hang_marks_channels_whose_logs_restart_once_redis_answers(
    database_url: str, tmp_path: Path, proxy: CuttingProxy
) -> None:
    async with rig(database_url, tmp_path, through(proxy)) as r:
        r.relay.start()
        await r.watcher.subscribe("a")
        r.relay.submit(ticks("a", range(1)))
        await r.recorder.until(lambda: len(r.recorder.on("a")) == 1)
        old = r.recorder.on("a")[0].epoch

        proxy.hang()
        r.relay.submit([*ticks("a", range(1, 2)), *ticks("b", range(1, 2))])
        r.relay.submit(ticks("a", range(2, 3)))
        await r.until(lambda: r.relay.gaps == ["a", "b"])
        assert r.relay.down

        async def recorded() -> bool:  # they outlive this process
            return await r.marks() == {"a", "b"}

        await eventually(recorded, WAIT)
        with pytest.raises(BrokerUnavailable):  # a sender waiting for its event is told at once
            await r.relay.publish("a", "tick", {"n": 9})

        proxy.resume()
        await r.repaired()
        restarted = await r.watcher.history("a")
        assert restarted.epoch != old and restarted.lost
        assert (await r.watcher.history("b")).lost
        # The other node heard of it; the new log goes on from there. (The publish that timed
        # out may still have happened: the proxy delivers it late, to the old log.)
        await r.recorder.until(lambda: bool(r.recorder.restarts))
        assert [(c, e) for c, e, _ in r.recorder.restarts] == [("a", restarted.epoch)]
        r.relay.submit(ticks("a", range(3, 4)))
        await r.recorder.until(lambda: r.recorder.on("a")[-1].data["n"] == 3)
        assert r.recorder.on("a")[-1].epoch == restarted.epoch
        assert 2 not in await numbers(r.watcher, "a")  # dropped: part of the gap
        sent = await r.relay.publish("a", "tick", {"n": 4})
        assert (sent.epoch, sent.data) == (restarted.epoch, {"n": 4})


async def test_a_mark_left_by_a_dead_process_is_applied_at_start_up(
    database_url: str, tmp_path: Path, redis: str | None
) -> None:
    async with rig(database_url, tmp_path, redis, realtime_relay_queue_size=1) as r:
        await r.watcher.subscribe("orphan")
        before = await r.broker.publish("orphan", "tick", {"n": 0}, "ts")
        async with r.database.transaction() as db:  # what the dead process recorded
            await gaps.mark(db, "dead", ["orphan"])

        r.relay.start()

        await r.repaired()
        history = await r.watcher.history("orphan")
        assert history.lost and history.epoch != before.epoch
        await r.recorder.until(lambda: bool(r.recorder.restarts))
        assert r.recorder.restarts == [("orphan", history.epoch, 1)]

        # Once started, a relay restarts what it marked itself, not a live relay's marks.
        async with r.database.transaction() as db:
            await gaps.mark(db, "alive", ["theirs"])
        r.relay.submit(ticks("mine", range(3)))  # two do not fit

        async def own_marks_cleared() -> bool:
            return await r.marks() == {"theirs"} and not r.relay.gaps

        await eventually(own_marks_cleared, WAIT)
        assert (await r.watcher.history("mine")).lost
        assert not (await r.watcher.history("theirs")).lost


async def test_events_arrive_in_order_per_channel(
    database_url: str, tmp_path: Path, redis: str | None
) -> None:
    channels = ("user:x", "job:y", "session:z")
    async with rig(database_url, tmp_path, redis) as r:
        r.relay.start()
        for channel in channels:
            await r.watcher.subscribe(channel)
        for n in range(0, 300, 10):  # interleaved, as units of work commit
            for channel in channels:
                r.relay.submit(ticks(channel, range(n, n + 10)))

        await r.recorder.until(lambda: len(r.recorder.events) == 900, WAIT)
        for channel in channels:
            assert [e.data["n"] for e in r.recorder.on(channel)] == list(range(300))
            assert [e.offset for e in r.recorder.on(channel)] == list(range(1, 301))
            assert await numbers(r.watcher, channel) == list(range(300))
        assert r.relay.gaps == [] and not await r.marks()


async def test_a_full_queue_marks_the_channels_of_what_it_drops(
    database_url: str, tmp_path: Path, redis: str | None
) -> None:
    async with rig(database_url, tmp_path, redis, realtime_relay_queue_size=5) as r:
        await r.watcher.subscribe("busy")
        await r.broker.publish("calm", "tick", {"n": 0}, "ts")
        r.relay.submit(ticks("busy", range(8)))  # three do not fit
        assert r.relay.gaps == ["busy"]

        r.relay.start()
        await r.repaired()
        restarted = await r.watcher.history("busy")
        assert restarted.lost
        assert await numbers(r.watcher, "busy") == []  # the five queued ones went with the gap
        r.relay.submit(ticks("busy", range(8, 10)))
        await r.recorder.until(lambda: len(r.recorder.on("busy")) == 2)
        assert [(e.epoch, e.data["n"]) for e in r.recorder.on("busy")] == [
            (restarted.epoch, 8),
            (restarted.epoch, 9),
        ]
        assert not (await r.watcher.history("calm")).lost  # other channels keep their logs


async def test_close_publishes_what_is_queued(
    database_url: str, tmp_path: Path, redis: str | None
) -> None:
    async with rig(database_url, tmp_path, redis) as r:
        r.relay.start()
        r.relay.submit(ticks("last", range(50)))
        await r.relay.close()
        assert await numbers(r.watcher, "last") == list(range(50))


async def test_an_event_redis_cannot_take_restarts_its_channel_and_the_relay_goes_on(
    database_url: str, tmp_path: Path
) -> None:
    require_redis()
    async with rig(database_url, tmp_path, redis_url()) as r:
        r.relay.start()
        unencodable = DomainEvent("odd", "tick", {"n": 0, "set": {1, 2}})  # not JSON
        r.relay.submit([unencodable, *ticks("odd", range(1, 2)), *ticks("even", range(2))])

        async def restarted() -> bool:
            return (await r.watcher.history("odd")).lost

        await eventually(restarted, WAIT)
        await r.repaired()
        assert await numbers(r.watcher, "even") == [0, 1]
        r.relay.submit(ticks("odd", range(2, 3)))
        await r.relay.close()
        assert await numbers(r.watcher, "odd") == [2]
