"""SQLite statements run inline: writers of one process take turns, and a lock held elsewhere
is waited for with the event loop free."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from agenthub.db import sqlite


@pytest.fixture
def database(tmp_path: Path) -> str:
    path = str(tmp_path / "inline.db")
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        setup.execute("INSERT INTO counter VALUES (1, 0)")
    setup.close()
    return path


async def _increment(connection: sqlite.InlineConnection, pause: float) -> None:
    """A write transaction that reads, yields to the loop, then writes and commits."""
    await connection.execute("UPDATE counter SET n = n + 0 WHERE id = 1")
    cursor = await connection.execute("SELECT n FROM counter WHERE id = 1")
    row = await cursor.fetchone()
    assert row is not None
    await asyncio.sleep(pause)
    await connection.execute("UPDATE counter SET n = ? WHERE id = 1", (row[0] + 1,))
    await connection.commit()


async def test_writers_of_one_process_take_turns_without_errors(database: str) -> None:
    connections = [await sqlite.connect(database, busy_seconds=5) for _ in range(4)]
    try:

        async def increments(connection: sqlite.InlineConnection) -> None:
            for _ in range(5):  # a connection serves one transaction at a time, as in a pool
                await _increment(connection, 0.005)

        await asyncio.gather(*(increments(c) for c in connections))
        cursor = await connections[0].execute("SELECT n FROM counter")
        assert await cursor.fetchone() == (20,)  # read-modify-write under the lock: none lost
    finally:
        for connection in connections:
            await connection.close()


async def test_a_lock_held_by_another_process_is_waited_for_with_the_loop_free(
    database: str,
) -> None:
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    connection = await sqlite.connect(database, busy_seconds=5)
    try:
        write = asyncio.create_task(connection.execute("UPDATE counter SET n = 7"))
        ticks = 0
        started = time.monotonic()
        while time.monotonic() - started < 0.3:  # the loop keeps running while the write waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not write.done()
        assert ticks >= 20
        other.execute("COMMIT")
        await write
        await connection.commit()
        cursor = await connection.execute("SELECT n FROM counter")
        assert await cursor.fetchone() == (7,)
    finally:
        await connection.close()
        other.close()


async def test_a_lock_held_past_the_timeout_is_database_is_locked(database: str) -> None:
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    connection = await sqlite.connect(database, busy_seconds=0.2)
    try:
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            await connection.execute("UPDATE counter SET n = 7")
        await connection.rollback()  # as SQLAlchemy does after an error
        assert not sqlite.write_lock(database).locked()
    finally:
        await connection.close()
        other.execute("ROLLBACK")
        other.close()


async def test_the_write_lock_is_given_back_on_rollback_and_close(database: str) -> None:
    connection = await sqlite.connect(database, busy_seconds=5)
    await connection.execute("UPDATE counter SET n = 1")
    assert sqlite.write_lock(database).locked()
    await connection.rollback()
    assert not sqlite.write_lock(database).locked()
    await connection.execute("UPDATE counter SET n = 2")
    await connection.close()
    assert not sqlite.write_lock(database).locked()


async def test_a_writer_that_waits_too_long_in_the_process_is_database_is_locked(
    database: str,
) -> None:
    holder = await sqlite.connect(database, busy_seconds=5)
    waiter = await sqlite.connect(database, busy_seconds=0.1)
    try:
        await holder.execute("UPDATE counter SET n = 1")  # holds the write lock
        with pytest.raises(sqlite3.OperationalError, match="database is locked"):
            await waiter.execute("UPDATE counter SET n = 2")
        await holder.commit()
        await waiter.execute("UPDATE counter SET n = 3")  # the lock is free again
        await waiter.commit()
        assert not sqlite.write_lock(database).locked()
    finally:
        await holder.close()
        await waiter.close()
