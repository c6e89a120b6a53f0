"""Maintenance kinds, enqueued by the scheduler (`jobs/scheduler.py`), never through the API:
purge soft-deleted data past retention, clean old jobs, refresh the query planner's statistics.

Each handler writes in its own transactions, not through `ctx.on_complete`: its work is
idempotent (deleting what is already gone deletes nothing; statistics refresh twice harmlessly),
so an attempt whose writes committed before it was lost or timed out leaves nothing wrong for
the next one, and purges run in short batches that never hold SQLite's single write lock for
long while the API is writing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.db.base import utcnow
from agenthub.db.engine import Database
from agenthub.db.models.jobs import FINAL_STATUSES
from agenthub.jobs.context import JobContext
from agenthub.jobs.registry import job_kind
from agenthub.jobs.service import purge_finished
from agenthub.web.idempotency import purge_expired

BATCH = 200
"""Rows deleted per transaction (each with what cascades from it)."""
OPTIMIZE = {"postgresql": "ANALYZE", "sqlite": "PRAGMA optimize"}

PurgeRun = Callable[[JobContext, datetime], Awaitable[int]]


@dataclass(frozen=True)
class Purge:
    """One part of `maintenance.purge_deleted`, declared by the package whose rows it deletes
    (its `tasks` module)."""

    name: str
    """The key of its count in the kind's result."""
    order: int
    """Purges run in this order: one whose work depends on another's comes after it."""
    run: PurgeRun


PURGES: dict[str, Purge] = {}


def purge(name: str, *, order: int) -> Callable[[PurgeRun], PurgeRun]:
    """Register the decorated `async def run(ctx, now) -> deleted` as the purge `name`."""

    def register(run: PurgeRun) -> PurgeRun:
        PURGES[name] = Purge(name, order, run)
        return run

    return register


class NoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CleanResult(BaseModel):
    deleted: int


class OptimizeResult(BaseModel):
    dialect: str
    statement: str


@job_kind("maintenance.purge_deleted", input=NoInput, scheduled=True, max_attempts=3)
async def purge_deleted_data(ctx: JobContext, _: NoInput) -> dict[str, int]:
    """Hard-delete what was soft-deleted longer ago than its retention, then the orphans: each
    registered purge in its order, with its count."""
    now = utcnow()
    return {
        part.name: await part.run(ctx, now)
        for part in sorted(PURGES.values(), key=lambda part: part.order)
    }


@purge("idempotency_keys", order=30)
async def purge_idempotency_keys(ctx: JobContext, now: datetime) -> int:
    """Records past their 24 h replay window."""
    return await in_batches(ctx.database, lambda db: purge_expired(db, now, BATCH))


async def in_batches(database: Database, purge: Callable[[AsyncSession], Awaitable[int]]) -> int:
    """Run `purge` (which deletes at most `BATCH` rows) in a transaction of its own until it
    deletes fewer; the total."""
    total = 0
    while True:
        count = await database.run(purge)
        total += count
        if count < BATCH:
            return total


@job_kind("maintenance.clean_jobs", input=NoInput, scheduled=True, max_attempts=3)
async def clean_jobs(ctx: JobContext, _: NoInput) -> CleanResult:
    """Delete jobs that finished more than `AGENTHUB_JOB_RETENTION_DAYS` ago."""
    cutoff = utcnow() - timedelta(days=ctx.settings.job_retention_days)
    deleted = await ctx.database.run(lambda db: purge_finished(db, cutoff, FINAL_STATUSES))
    return CleanResult(deleted=deleted)


@job_kind("maintenance.optimize", input=NoInput, scheduled=True, max_attempts=3)
async def optimize(ctx: JobContext, _: NoInput) -> OptimizeResult:
    """Refresh the planner's statistics: `ANALYZE` on PostgreSQL (allowed in a transaction,
    unlike VACUUM, which autovacuum does), `PRAGMA optimize` on SQLite."""
    async with ctx.database.transaction() as db:
        dialect = db.get_bind().dialect.name
        statement = OPTIMIZE[dialect]
        await db.execute(text(statement))
    return OptimizeResult(dialect=dialect, statement=statement)
