"""SQLite connections whose statements run on the event loop's own thread.

A statement on a local SQLite file takes microseconds. aiosqlite hands each one to a worker
thread and its result back to the loop, which cost more CPU than the statements themselves
(bench/hotpath.py: about a third of a request). Here aiosqlite still opens and closes the
connection, but every statement runs inline.

A statement that ran inline must never wait inside SQLite for a lock, or the whole loop would
wait with it. So:

- Writers of this process take turns: a connection takes the database's write lock (an
  `asyncio.Lock`, one per file and event loop) before the statement that starts its write
  transaction and gives it back when the transaction ends. No connection of the process ever
  finds the file locked by another one of its own.
- SQLite's busy timeout is 0: a lock held by another process (a command-line tool, a second
  server process) is answered `SQLITE_BUSY` at once, and the statement is tried again after an
  asyncio sleep, for up to `busy_seconds` in all; then the error is raised, as SQLite's own
  busy timeout would have.

Python's `sqlite3` starts a transaction only before `INSERT`, `UPDATE`, `DELETE` and `REPLACE`
(and `SAVEPOINT` starts one itself), so a transaction is always a write transaction and reads
outside one never lock.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

WRITE_STATEMENTS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "SAVEPOINT", "BEGIN")
FIRST_RETRY_SECONDS = 0.001
LONGEST_RETRY_SECONDS = 0.05
_SNAPSHOT_BUSY = 517  # SQLITE_BUSY_SNAPSHOT: the snapshot is stale, waiting won't help

_write_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def write_lock(database: str) -> asyncio.Lock:
    """The write lock of this database file on the running event loop."""
    locks = _write_locks.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(database, asyncio.Lock())


def _starts_write(args: tuple[Any, ...]) -> bool:
    return (
        bool(args)
        and isinstance(args[0], str)
        and args[0].lstrip()[:9].upper().startswith(WRITE_STATEMENTS)
    )


def _busy(error: sqlite3.OperationalError) -> bool:
    code: int = getattr(error, "sqlite_errorcode", sqlite3.SQLITE_BUSY)
    return code & 0xFF == sqlite3.SQLITE_BUSY and code != _SNAPSHOT_BUSY


class InlineConnection(aiosqlite.Connection):
    """An aiosqlite connection that runs its statements on the calling thread."""

    def __init__(
        self, connector: Callable[[], sqlite3.Connection], database: str, busy_seconds: float
    ) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._database = database
        self._busy_seconds = busy_seconds
        self._lock: asyncio.Lock | None = None

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._busy_seconds
        if self._lock is None and self._database != ":memory:" and _starts_write(args):
            await self._take_lock(deadline - loop.time())
        try:
            return await self._call(partial(fn, *args, **kwargs), deadline)
        finally:
            if self._lock is not None and not self._in_transaction():
                self._lock.release()
                self._lock = None

    def stop(self) -> asyncio.Future[Any] | None:
        """Close without waiting (SQLAlchemy's terminate); the write lock goes back too."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        return super().stop()

    async def _take_lock(self, wait: float) -> None:
        lock = write_lock(self._database)
        try:
            # `asyncio.timeout`, not `wait_for`: on Python 3.11 a lock granted as `wait_for`
            # times out can be lost, held by nobody for ever.
            async with asyncio.timeout(max(wait, 0.0)):
                await lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        self._lock = lock

    async def _call(self, call: Callable[[], Any], deadline: float) -> Any:
        delay = FIRST_RETRY_SECONDS
        loop = asyncio.get_running_loop()
        while True:
            try:
                return call()
            except sqlite3.OperationalError as error:
                if not _busy(error) or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, LONGEST_RETRY_SECONDS)

    def _in_transaction(self) -> bool:
        try:
            return self._connection is not None and self._connection.in_transaction
        except sqlite3.ProgrammingError:  # closed
            return False


async def connect(database: str, busy_seconds: float) -> InlineConnection:
    """A connection to the SQLite file `database` (or `:memory:`) that waits up to
    `busy_seconds` for a lock held by another process."""

    def connector() -> sqlite3.Connection:
        return sqlite3.connect(database, timeout=0, check_same_thread=False)

    connection = InlineConnection(connector, database, busy_seconds)
    connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own
    await connection
    return connection


def database_path(url_database: str | None) -> str:
    """The file a SQLite URL's database part names, resolved (`:memory:` as is)."""
    if not url_database or url_database == ":memory:":
        return ":memory:"
    return str(Path(url_database).resolve())
