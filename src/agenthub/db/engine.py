"""Engine and session factory per dialect; SQLite runs in WAL mode, its statements inline
(`db.sqlite`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import structlog
from sqlalchemy import event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.util.concurrency import greenlet_spawn

from agenthub.cache.stale import take_stale_owners
from agenthub.config import Settings
from agenthub.core.errors import AgentHubError
from agenthub.core.events import DomainEvent, Publisher, Recorder, log_publisher, take_pending
from agenthub.core.text import surrogate_in, valid_text
from agenthub.db import sqlite
from agenthub.db.unit import Statements, Unit

log = structlog.get_logger("agenthub.db")

SQLITE_BUSY_TIMEOUT_MS = 5000
T = TypeVar("T")
Invalidator = Callable[[set[str]], Awaitable[None]]


def _sqlite_pragmas(dbapi_connection: Any, _: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _read_json(text: str) -> Any:
    """A JSON column's value. SQLite and PostgreSQL's `json` type keep the JSON text they are
    given, escapes included, so a lone surrogate written before request bodies were checked
    comes back as U+FFFD rather than failing every response that shows it."""
    if text == "{}":  # most metadata, on every row of a page
        return {}
    value = json.loads(text)
    if surrogate_in(text, value) is not None:
        value = json.loads(valid_text(json.dumps(value, ensure_ascii=False)))
    return value


def create_engine(settings: Settings) -> AsyncEngine:
    """An async engine for the configured URL, tuned for its dialect."""
    url = settings.database_url
    if settings.is_sqlite:
        database = sqlite.database_path(make_url(url).database)
        # The connection used last has the warmest page cache: SQLite drops a connection's
        # cached pages whenever another connection has written. (`:memory:` has one.)
        pool = {} if database == ":memory:" else {"pool_use_lifo": True}
        engine = create_async_engine(
            url,
            async_creator=partial(sqlite.connect, database, SQLITE_BUSY_TIMEOUT_MS / 1000),
            json_deserializer=_read_json,
            **pool,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_timeout_seconds,
        connect_args={"timeout": settings.db_timeout_seconds},
        json_deserializer=_read_json,
    )
    event.listen(engine.sync_engine, "handle_error", _discard_stuck_connection)
    event.listen(engine.sync_engine.pool, "checkout", _replace_closed)
    return engine


def _replace_closed(dbapi_connection: Any, _: ConnectionPoolEntry, __: Any) -> None:
    """What `pool_pre_ping` is for, without its three round trips on every checkout (a
    transaction, a query, a rollback): asyncpg knows a connection is closed once its socket
    saw the server end it (a restart), and the pool replaces it. A server that vanished
    without a word is found by the request's first statement, answered 503."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")


def _discard_stuck_connection(context: ExceptionContext) -> None:
    """A connection whose query was cut off (the server went away mid-statement) can come
    back from the pool still "in operation"; asyncpg then refuses every statement on it with
    `InternalClientError`. Treat that as a disconnect: the pool drops the connection and the
    request gets a 503 instead of a 500."""
    if type(context.original_exception).__name__ == "InternalClientError":
        context.is_disconnect = True


class Database:
    """The engine and session factory an app or worker process shares."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: AsyncEngine | None = None,
        publisher: Publisher = log_publisher,
        invalidate: Invalidator | None = None,
    ) -> None:
        """The engine for `settings` (or `engine`, when the process shares it); after each
        commit `invalidate` (the response cache's) is given the owners whose cached reads it
        made stale, then `publisher` (the event relay's) its events. Command-line tools keep
        the defaults: no cache, events logged."""
        self.engine = engine or create_engine(settings)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._publish = publisher
        self._invalidate = invalidate or _no_cache
        self._event_observers: list[Publisher] = []
        self._units: set[asyncio.Task[Any]] = set()
        self._statements = Statements(self.engine.dialect)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back on error.

        An `AgentHubError` with `keep_writes` (failed login, refresh-token reuse) still commits
        what the request recorded before it failed, and publishes its events. Domain events
        recorded with `core.events.emit` are handed to the publisher once the commit succeeded,
        after the
        cached reads of the users it wrote for (`agenthub.cache`) were invalidated.
        """
        async with self.sessions() as session:
            try:
                yield session
            except AgentHubError as exc:
                if exc.keep_writes:
                    await self._commit(session)
                raise
            await self._commit(session)

    def time_statements(self, observe: Callable[[float], None]) -> None:
        """Tell `observe` how long each statement of a `unit` took, in seconds (the
        engine's own statements are timed through its events)."""
        self._statements.observers.append(observe)

    async def _commit(self, session: AsyncSession) -> None:
        await session.commit()
        await self._committed(session)

    async def _committed(self, unit: Recorder) -> None:
        """After a commit: the cached reads of the users it wrote for are invalidated, then
        its events are published."""
        if owners := take_stale_owners(unit):
            await self._invalidate(owners)
        if events := take_pending(unit):
            self.publish(events)

    def publish(self, events: list[DomainEvent]) -> None:
        """Hand `events` to the publisher (and the observers) now: a committed unit's, or
        events outside any unit of work (a job's streamed deltas)."""
        self._publish(events)
        for observe in self._event_observers:
            observe(events)

    def observe_events(self, observe: Publisher) -> None:
        """Also hand every batch of published events to `observe` (tests record them)."""
        self._event_observers.append(observe)

    @asynccontextmanager
    async def unit(self, *, writes: bool = True) -> AsyncIterator[Unit]:
        """One unit of work on a pooled driver connection (`db.unit`): committed when the
        block ends, then handed to the cache and the publisher as `transaction` does; rolled
        back on any error (none keeps its writes). A unit that only reads (`writes=False`)
        runs each statement on its own, without a transaction to begin and end."""
        pooled = await greenlet_spawn(self.engine.sync_engine.pool.connect)
        driver: Any = pooled.driver_connection
        unit = Unit(driver, self._statements)
        transaction = driver.transaction() if unit.postgres and writes else None
        try:
            if transaction is not None:
                await transaction.start()
            yield unit
            if transaction is not None:
                await transaction.commit()
            elif not unit.postgres:
                await driver.commit()
        except BaseException:
            await _roll_back(pooled, None if unit.postgres else driver, transaction)
            raise
        await greenlet_spawn(pooled.close)
        await self._committed(unit)

    async def run(self, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`work(db)` in one unit of work that completes even when the calling task is
        cancelled: background tasks (jobs, workers) are cancelled at any await, and a
        transaction cut off half-way could keep SQLite's write lock until its connection is
        collected. `settle` waits for the units whose callers were cancelled."""

        async def unit() -> T:
            async with self.transaction() as db:
                return await work(db)

        task = asyncio.create_task(unit())
        self._units.add(task)
        task.add_done_callback(self._ended)
        return await asyncio.shield(task)

    def _ended(self, unit: asyncio.Task[Any]) -> None:
        """Forget a finished unit. Its caller, if not cancelled, gets its error; one whose
        caller was cancelled is logged here (asyncio would report it as never retrieved)."""
        self._units.discard(unit)
        if not unit.cancelled() and (error := unit.exception()) is not None:
            log.debug("unit_of_work_failed", error=repr(error))

    async def settle(self) -> None:
        """Wait until no unit of work started by `run` is in progress."""
        while self._units:
            await asyncio.wait(set(self._units))

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.settle()
        await self.engine.dispose()


async def _roll_back(pooled: Any, sqlite_driver: Any, transaction: Any) -> None:
    """Undo a failed unit (its PostgreSQL transaction, or the SQLite connection's own) and
    give its connection back; one that cannot even roll back is discarded."""
    try:
        if transaction is not None:
            await transaction.rollback()
        elif sqlite_driver is not None:
            await sqlite_driver.rollback()
    except BaseException:
        await greenlet_spawn(pooled.invalidate)
        raise
    await greenlet_spawn(pooled.close)


async def _no_cache(_: set[str]) -> None:
    """The invalidator until a cache is wired (command-line tools cache nothing)."""
