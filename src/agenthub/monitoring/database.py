"""Database pool state and query latency, from SQLAlchemy's pool and cursor events."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool

from agenthub.core.metrics import (
    DB_POOL_CHECKED_OUT,
    DB_POOL_CONNECTIONS,
    DB_POOL_SIZE,
    DB_QUERY_DURATION,
)
from agenthub.db.engine import Database
from agenthub.monitoring.performance import percentile

MAX_QUERIES = 20_000
_STARTED = "agenthub.query_started"


@dataclass(frozen=True)
class PoolState:
    size: int
    checked_out: int
    checked_in: int
    overflow: int


@dataclass(frozen=True)
class QueryLatency:
    count: int  # queries in the window
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


class QueryTimer:
    """Durations of the last queries this process ran."""

    def __init__(self, seconds: float = 300.0) -> None:
        self.seconds = seconds
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_QUERIES)

    def add(self, seconds: float) -> None:
        self._samples.append((time.monotonic(), seconds))
        DB_QUERY_DURATION.observe(seconds)

    def latency(self) -> QueryLatency:
        since = time.monotonic() - self.seconds
        ordered = sorted(ms * 1000 for at, ms in self._samples if at >= since)
        return QueryLatency(
            count=len(ordered),
            p50_ms=percentile(ordered, 0.5),
            p95_ms=percentile(ordered, 0.95),
            p99_ms=percentile(ordered, 0.99),
            max_ms=ordered[-1] if ordered else 0.0,
        )


def instrument(database: Database, timer: QueryTimer) -> None:
    """Time every statement and keep the `db_pool_*` gauges current."""
    database.time_statements(timer.add)
    sync_engine = database.engine.sync_engine
    pool = sync_engine.pool
    if isinstance(pool, QueuePool):
        DB_POOL_SIZE.set(pool.size())

    def before(conn: Any, *_: Any) -> None:
        conn.info.setdefault(_STARTED, []).append(time.perf_counter())

    def after(conn: Any, *_: Any) -> None:
        started = conn.info.get(_STARTED)
        if started:
            timer.add(time.perf_counter() - started.pop())

    event.listen(sync_engine, "before_cursor_execute", before)
    event.listen(sync_engine, "after_cursor_execute", after)
    event.listen(pool, "checkout", lambda *_: DB_POOL_CHECKED_OUT.inc())
    event.listen(pool, "checkin", lambda *_: DB_POOL_CHECKED_OUT.dec())
    event.listen(pool, "connect", lambda *_: DB_POOL_CONNECTIONS.inc())
    event.listen(pool, "close", lambda *_: DB_POOL_CONNECTIONS.dec())


def pool_state(engine: AsyncEngine) -> PoolState:
    pool = engine.sync_engine.pool
    if not isinstance(pool, QueuePool):
        return PoolState(size=0, checked_out=0, checked_in=0, overflow=0)
    return PoolState(
        size=pool.size(),
        checked_out=pool.checkedout(),
        checked_in=pool.checkedin(),
        overflow=max(0, pool.overflow()),
    )
