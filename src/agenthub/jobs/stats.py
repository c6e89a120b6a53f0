"""Job statistics and the queue's state, for a user's own jobs or (admins) all of them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.db.base import utcnow
from agenthub.db.models.jobs import Job
from agenthub.jobs.schemas import JobStats, KindQueue, LatencyPercentiles, QueueInfo, Throughput

S = TypeVar("S", bound="Select[*tuple[Any, ...]]")
SAMPLE = 1000
"""Percentiles are computed over this many of the most recently finished jobs."""


def percentiles(values: list[float]) -> LatencyPercentiles:
    """Nearest-rank p50/p95/p99 of `values` (None when there are none)."""
    if not values:
        return LatencyPercentiles(p50=None, p95=None, p99=None)
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered) + 0.5) - 1))]

    return LatencyPercentiles(p50=rank(0.50), p95=rank(0.95), p99=rank(0.99))


def _scoped(stmt: S, user_id: str | None) -> S:
    return stmt if user_id is None else stmt.where(Job.user_id == user_id)


async def job_stats(db: AsyncSession, user_id: str | None) -> JobStats:
    counts = (
        await db.execute(
            _scoped(select(Job.kind, Job.status, func.count()), user_id).group_by(
                Job.kind, Job.status
            )
        )
    ).all()
    by_status: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}
    for kind, status, count in counts:
        by_status[status] = by_status.get(status, 0) + count
        by_kind.setdefault(kind, {})[status] = count
    now = utcnow()

    async def finished_since(status: str, seconds: float) -> int:
        stmt = select(func.count()).where(
            Job.status == status, Job.finished_at >= now - timedelta(seconds=seconds)
        )
        return int(await db.scalar(_scoped(stmt, user_id)) or 0)

    recent = (
        await db.execute(
            _scoped(
                select(Job.duration_ms, Job.created_at, Job.started_at, Job.attempts)
                .where(Job.status == "completed", Job.finished_at.is_not(None))
                .order_by(Job.finished_at.desc())
                .limit(SAMPLE),
                user_id,
            )
        )
    ).all()
    run_ms = [float(d) for d, *_ in recent if d is not None]
    wait_ms = [
        (started - created).total_seconds() * 1000
        for _, created, started, attempts in recent
        if started is not None and attempts == 1
    ]
    return JobStats(
        by_status=by_status,
        by_kind=by_kind,
        throughput=Throughput(
            completed_last_minute=await finished_since("completed", 60),
            completed_last_hour=await finished_since("completed", 3600),
            failed_last_hour=await finished_since("failed", 3600),
        ),
        run_ms=percentiles(run_ms),
        wait_ms=percentiles(wait_ms),
    )


async def queue_info(
    db: AsyncSession, user_id: str | None, workers: list[dict[str, Any]]
) -> QueueInfo:
    now = utcnow()
    rows = (
        await db.execute(
            _scoped(
                select(Job.kind, Job.status, func.count(), func.min(Job.run_at))
                .where(Job.status.in_(("waiting", "queued", "running")))
                .group_by(Job.kind, Job.status),
                user_id,
            )
        )
    ).all()
    kinds: dict[str, KindQueue] = {}
    totals = {"waiting": 0, "queued": 0, "running": 0}
    oldest_all: float | None = None
    for kind, status, count, oldest in rows:
        entry = kinds.setdefault(
            kind, KindQueue(kind=kind, queued=0, running=0, oldest_queued_age_s=None)
        )
        totals[status] += count
        if status == "running":
            entry.running = count
        elif status == "queued":
            entry.queued = count
            age = max(0.0, (now - oldest).total_seconds())
            entry.oldest_queued_age_s = age
            oldest_all = age if oldest_all is None else max(oldest_all, age)
    return QueueInfo(
        kinds=sorted(kinds.values(), key=lambda k: k.kind),
        queued=totals["queued"],
        running=totals["running"],
        waiting=totals["waiting"],
        oldest_queued_age_s=oldest_all,
        workers=workers,
    )
