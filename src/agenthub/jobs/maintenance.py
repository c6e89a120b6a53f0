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
from datetime import timedelta

from pydantic import BaseModel, ConfigDict
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.auth.service import purge_deleted_users
from agenthub.core.idempotency import purge_expired
from agenthub.db.base import utcnow
from agenthub.db.engine import Database
from agenthub.db.models.jobs import FINAL_STATUSES
from agenthub.files.service import sweep_orphans
from agenthub.files.storage import LocalStorage
from agenthub.jobs.context import JobContext
from agenthub.jobs.registry import job_kind
from agenthub.jobs.service import purge_finished
from agenthub.sessions.service import purge_deleted_sessions

BATCH = 200
"""Rows deleted per transaction (each with what cascades from it)."""
ORPHAN_AGE = timedelta(hours=1)
"""Stored content younger than this is never an orphan: its upload may not have committed."""
OPTIMIZE = {"postgresql": "ANALYZE", "sqlite": "PRAGMA optimize"}


class NoInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PurgeResult(BaseModel):
    sessions: int
    """Sessions in the trash past `AGENTHUB_DELETED_RETENTION_DAYS` (messages went with them)."""
    accounts: int
    """Accounts deleted more than `AGENTHUB_ACCOUNT_RETENTION_DAYS` ago, with all they owned."""
    idempotency_keys: int
    """Records past their 24 h replay window."""
    orphan_files: int
    """Stored content older than an hour that no file row references (including the files of
    the accounts purged in this run)."""


class CleanResult(BaseModel):
    deleted: int


class OptimizeResult(BaseModel):
    dialect: str
    statement: str


@job_kind("maintenance.purge_deleted", input=NoInput, scheduled=True, max_attempts=3)
async def purge_deleted_data(ctx: JobContext, _: NoInput) -> PurgeResult:
    """Hard-delete what was soft-deleted longer ago than its retention, then the orphans."""
    settings, now = ctx.settings, utcnow()
    sessions_cutoff = now - timedelta(days=settings.deleted_retention_days)
    accounts_cutoff = now - timedelta(days=settings.account_retention_days)
    sessions = await _in_batches(
        ctx.database, lambda db: purge_deleted_sessions(db, sessions_cutoff, BATCH)
    )
    accounts = await _in_batches(
        ctx.database, lambda db: purge_deleted_users(db, accounts_cutoff, BATCH)
    )
    keys = await _in_batches(ctx.database, lambda db: purge_expired(db, now, BATCH))
    # After the accounts' rows are gone (committed), their files' content is unreferenced.
    storage = LocalStorage(settings.files_dir)
    orphans = await ctx.database.run(lambda db: sweep_orphans(db, storage, now - ORPHAN_AGE))
    return PurgeResult(
        sessions=sessions, accounts=accounts, idempotency_keys=keys, orphan_files=orphans
    )


async def _in_batches(database: Database, purge: Callable[[AsyncSession], Awaitable[int]]) -> int:
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
