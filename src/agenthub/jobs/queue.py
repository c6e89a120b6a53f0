"""The queue's state changes, each one guarded so that only the rightful owner makes it.

A worker claims with one `UPDATE ... WHERE id IN (SELECT ... LIMIT n)`; on PostgreSQL the
subquery takes `FOR UPDATE SKIP LOCKED`, so concurrent workers claim disjoint jobs without
waiting on each other; on SQLite the statement runs under the database's single write lock,
which serializes claims. Claiming increments `attempts`, and every later change the worker
makes is guarded by `(worker_id, attempts, status = 'running')`: once a lease expired and the
job was re-queued (or claimed by another worker, or canceled), the old owner's writes match no
row and are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.cache.stale import invalidate_cache_of
from agenthub.core.channels import ChannelFamily
from agenthub.core.events import emit
from agenthub.db.base import utcnow
from agenthub.db.models.jobs import Job, JobDependency
from agenthub.jobs.schemas import JobOut

JOB = ChannelFamily("job")
"""A job's progress, deltas and end, for its owner."""
WORKFLOW = ChannelFamily("workflow")
"""Every event of a workflow's jobs, for its owner."""
WAKE_CHANNEL = "jobs"
"""Workers listen here: `job.queued` {kind} wakes them, `job.cancel` {id} interrupts a run."""
_WOKEN = "agenthub.jobs.woken"
REAP_BATCH = 100
COMPLETED_PROGRESS = {"percent": 100.0, "message": None}


def job_data(job: Job) -> dict[str, Any]:
    return JobOut.model_validate(job).model_dump(mode="json")


def emit_job(db: AsyncSession, job: Job, event: str) -> None:
    """Publish `event` for the job on `job:{id}` (and `workflow:{id}`) after commit."""
    data = job_data(job)
    emit(db, JOB(job.id), event, data)
    if job.workflow_id is not None:
        emit(db, WORKFLOW(job.workflow_id), event, data)


def wake(db: AsyncSession, kind: str) -> None:
    """Wake idle workers after commit; once per kind and unit of work, however many jobs."""
    woken: set[str] = db.info.setdefault(_WOKEN, set())
    if kind not in woken:
        woken.add(kind)
        emit(db, WAKE_CHANNEL, "job.queued", {"kind": kind})


def interrupt(db: AsyncSession, job_id: str) -> None:
    """Tell the worker running this job to stop it (after commit)."""
    emit(db, WAKE_CHANNEL, "job.cancel", {"id": job_id})


def _returning(stmt: Any) -> Any:
    return stmt.returning(Job).execution_options(synchronize_session=False)


async def _rows(db: AsyncSession, stmt: Any) -> list[Job]:
    """The jobs a guarded UPDATE changed; their owners' cached stats are stale."""
    result = await db.scalars(_returning(stmt), execution_options={"populate_existing": True})
    jobs = list(result.all())
    invalidate_cache_of(db, *(job.user_id for job in jobs))
    return jobs


async def claim(
    db: AsyncSession,
    *,
    worker_id: str,
    limit: int,
    lease_seconds: float,
    kinds: Sequence[str] = (),
) -> list[Job]:
    """Take up to `limit` due jobs, highest priority first, and start their next attempt."""
    now = utcnow()
    due = (
        select(Job.id)
        .where(Job.status == "queued", Job.run_at <= now)
        .order_by(Job.priority.desc(), Job.run_at, Job.id)
        .limit(limit)
    )
    if kinds:
        due = due.where(Job.kind.in_(kinds))
    if db.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        update(Job)
        .where(Job.id.in_(due.scalar_subquery()))
        .values(
            status="running",
            attempts=Job.attempts + 1,
            worker_id=worker_id,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            progress=None,
        )
    )
    jobs = await _rows(db, stmt)
    for job in jobs:
        emit_job(db, job, "job.started")
    return sorted(jobs, key=lambda j: (-j.priority, j.run_at, j.id))


async def renew(
    db: AsyncSession, worker_id: str, held: dict[str, int], lease_seconds: float
) -> set[str]:
    """Extend the leases of the jobs this worker holds (`id -> attempt`); the ids it still owns."""
    if not held:
        return set()
    stmt = (
        update(Job)
        .where(Job.id.in_(held), Job.worker_id == worker_id, Job.status == "running")
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_seconds))
        .returning(Job.id, Job.attempts)
        .execution_options(synchronize_session=False)
    )
    rows = (await db.execute(stmt)).all()
    return {job_id for job_id, attempts in rows if held.get(job_id) == attempts}


def _owned(job_id: str, worker_id: str, attempt: int) -> Any:
    return update(Job).where(
        Job.id == job_id,
        Job.worker_id == worker_id,
        Job.attempts == attempt,
        Job.status == "running",
    )


def _finished(started_at: datetime | None, now: datetime) -> dict[str, Any]:
    duration = None if started_at is None else int((now - started_at).total_seconds() * 1000)
    return {"finished_at": now, "duration_ms": duration, "lease_expires_at": None}


async def settle(
    db: AsyncSession,
    job: Job,
    worker_id: str,
    *,
    status: str,
    result: Any = None,
    error: dict[str, Any] | None = None,
) -> Job | None:
    """Record the attempt's final outcome (`completed`, `failed`); None if no longer ours.
    A completed job's progress is 100 %, whatever its handler last reported.

    Run it first in its unit of work: the guarded UPDATE takes the row lock (the SQLite write
    lock) before anything else is read, so dependents see a consistent picture.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": status, "result": result, "error": error}
    if status == "completed":
        values["progress"] = COMPLETED_PROGRESS
    values |= _finished(job.started_at, now)
    rows = await _rows(db, _owned(job.id, worker_id, job.attempts).values(**values))
    if not rows:
        return None
    done = rows[0]
    emit_job(db, done, f"job.{status}")
    if status == "completed":
        await release_dependents(db, done)
    else:
        await cancel_dependents(db, done)
    return done


async def requeue(
    db: AsyncSession,
    job: Job,
    worker_id: str,
    *,
    delay: float,
    error: dict[str, Any] | None,
    count_attempt: bool = True,
) -> Job | None:
    """Put the attempt back in the queue: a retry after `delay` (emits `job.retrying`), or a
    hand-back at shutdown that does not count as an attempt (`count_attempt=False`)."""
    values: dict[str, Any] = {
        "status": "queued",
        "worker_id": None,
        "lease_expires_at": None,
        "run_at": utcnow() + timedelta(seconds=delay),
    }
    if error is not None:
        values["error"] = error
    if not count_attempt:
        values["attempts"] = Job.attempts - 1
    rows = await _rows(db, _owned(job.id, worker_id, job.attempts).values(**values))
    if not rows:
        return None
    requeued = rows[0]
    emit_job(db, requeued, "job.retrying" if count_attempt else "job.queued")
    wake(db, requeued.kind)
    return requeued


async def report_progress(
    db: AsyncSession, job: Job, worker_id: str, progress: dict[str, Any]
) -> bool:
    rows = await _rows(db, _owned(job.id, worker_id, job.attempts).values(progress=progress))
    if rows:
        emit_job(db, rows[0], "job.progress")
    return bool(rows)


async def reap_expired(db: AsyncSession, *, backoff: Any) -> list[Job]:
    """Re-queue (or fail, when no attempt is left) running jobs whose lease expired: their
    worker died or lost the database. `backoff(attempt) -> seconds` paces the retry."""
    now = utcnow()
    stale = (
        select(Job)
        .where(Job.status == "running", Job.lease_expires_at < now)
        .order_by(Job.lease_expires_at)
        .limit(REAP_BATCH)
    )
    if db.get_bind().dialect.name == "postgresql":
        stale = stale.with_for_update(skip_locked=True)
    changed: list[Job] = []
    for job in (await db.scalars(stale)).all():
        error = {"type": "lease_expired", "message": "The worker running the job stopped."}
        guard = update(Job).where(
            Job.id == job.id, Job.status == "running", Job.lease_expires_at < now
        )
        if job.attempts >= job.max_attempts:
            rows = await _rows(
                db, guard.values(status="failed", error=error, **_finished(job.started_at, now))
            )
            event = "job.failed"
        else:
            delay = timedelta(seconds=backoff(job.attempts))
            rows = await _rows(
                db,
                guard.values(
                    status="queued",
                    error=error,
                    worker_id=None,
                    lease_expires_at=None,
                    run_at=now + delay,
                ),
            )
            event = "job.retrying"
        for row in rows:
            emit_job(db, row, event)
            if row.status == "failed":
                await cancel_dependents(db, row)
            else:
                wake(db, row.kind)
            changed.append(row)
    return changed


async def _unfinished_dependencies(db: AsyncSession, job_id: str) -> int:
    count = await db.scalar(
        select(func.count())
        .select_from(JobDependency)
        .join(Job, Job.id == JobDependency.depends_on_id)
        .where(JobDependency.job_id == job_id, Job.status != "completed")
    )
    return int(count or 0)


def _dependents(ids: Iterable[str], statuses: Sequence[str]) -> Any:
    return (
        select(Job)
        .join(JobDependency, JobDependency.job_id == Job.id)
        .where(JobDependency.depends_on_id.in_(list(ids)), Job.status.in_(statuses))
        .with_for_update()
    )


async def release_dependents(db: AsyncSession, job: Job) -> None:
    """Queue the jobs waiting on `job` whose dependencies are now all completed.

    The dependents are locked first: when two dependencies complete at once, the second
    transaction waits and then counts with the first one's commit visible.
    """
    now = utcnow()
    for dependent in (await db.scalars(_dependents([job.id], ("waiting",)))).unique().all():
        if await _unfinished_dependencies(db, dependent.id):
            continue
        dependent.status = "queued"
        dependent.run_at = max(dependent.run_at, now)
        await db.flush()
        emit_job(db, dependent, "job.queued")
        wake(db, dependent.kind)


async def cancel_dependents(db: AsyncSession, job: Job) -> None:
    """Cancel, transitively, every job waiting on `job` (which failed or was canceled)."""
    now = utcnow()
    frontier = [job.id]
    while frontier:
        rows = (await db.scalars(_dependents(frontier, ("waiting",)))).unique().all()
        for row in rows:
            row.status = "canceled"
            row.error = {
                "type": "dependency_failed",
                "message": f"Dependency {job.id} ended {job.status}.",
            }
            row.finished_at = now
        await db.flush()
        for row in rows:
            emit_job(db, row, "job.canceled")
        frontier = [row.id for row in rows]
