"""Scheduled kinds (maintenance): each is due every `AGENTHUB_MAINTENANCE_INTERVAL_SECONDS`.

Every worker runs the scheduler for the kinds it handles; the one whose guarded
`UPDATE job_schedules SET next_run_at = ... WHERE next_run_at <= now` matches enqueues the run
in the same transaction, so a run is enqueued once however many workers there are (on
PostgreSQL a concurrent UPDATE waits for the row and re-checks the condition; SQLite
serializes writers). A run still waiting or running when the next one is due is not joined by
another: a backlog of workers adds no backlog of maintenance.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.config import Settings
from agenthub.db.base import utcnow
from agenthub.db.engine import Database
from agenthub.db.models.jobs import OPEN_STATUSES, Job, JobSchedule
from agenthub.jobs.registry import KINDS, Kind
from agenthub.jobs.service import NewJob, enqueue


async def run_due_schedules(database: Database, settings: Settings, kinds: Iterable[str]) -> None:
    """Enqueue each scheduled kind among `kinds` that is due."""
    for name in kinds:
        kind = KINDS.get(name)
        if kind is None or not kind.scheduled:
            continue
        try:
            await database.run(functools.partial(_run_if_due, kind=kind, settings=settings))
        except IntegrityError:
            # Another worker created the schedule row at the same moment. Caught here, outside
            # the transaction: on PostgreSQL the failed INSERT has aborted it.
            continue


async def _run_if_due(db: AsyncSession, *, kind: Kind, settings: Settings) -> None:
    now = utcnow()
    interval = timedelta(seconds=settings.maintenance_interval_seconds)
    if await db.get(JobSchedule, kind.name) is None:
        # First start: run one interval from now, not at once on every fresh database.
        db.add(JobSchedule(name=kind.name, next_run_at=now + interval))
        await db.flush()
        return
    moved = await db.execute(
        update(JobSchedule)
        .where(JobSchedule.name == kind.name, JobSchedule.next_run_at <= now)
        .values(next_run_at=now + interval)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return
    if await db.scalar(select(Job.id).where(Job.kind == kind.name, Job.status.in_(OPEN_STATUSES))):
        return
    await enqueue(
        db,
        NewJob(kind=kind.name),
        default_timeout=settings.job_default_timeout_seconds,
        kind=kind,
    )
