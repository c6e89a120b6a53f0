"""Jobs as users see them: enqueue (in the caller's transaction), read, cancel, retry, delete."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.cache.stale import invalidate_cache_of, invalidate_every_cache
from agenthub.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from agenthub.core.pagination import PageParams, keyset_page
from agenthub.db.base import utcnow
from agenthub.db.models.jobs import FINAL_STATUSES, OPEN_STATUSES, Job, JobDependency, Workflow
from agenthub.jobs import queue
from agenthub.jobs.registry import Kind, get_kind, parse_input

RETRYABLE_STATUSES = ("failed", "canceled")


@dataclass
class NewJob:
    """A job to enqueue; `input` is validated against the kind unless `validate` is False
    (a workflow step whose input refers to a dependency's result is validated when it runs)."""

    kind: str
    input: dict[str, Any] = field(default_factory=dict)
    user_id: str | None = None
    priority: int = 0
    depends_on: Sequence[str] = ()
    max_attempts: int | None = None
    timeout_s: float | None = None
    run_at: datetime | None = None
    session_id: str | None = None
    agent_id: str | None = None
    workflow_id: str | None = None
    step_key: str | None = None
    validate: bool = True


async def enqueue(
    db: AsyncSession, new: NewJob, *, default_timeout: float, kind: Kind | None = None
) -> Job:
    """Add the job to the queue in `db`'s transaction: it exists (and workers hear of it)
    only if the caller's transaction commits."""
    kind = kind or get_kind(new.kind)
    data = new.input
    if new.validate:
        data = parse_input(kind, new.input).model_dump(mode="json", exclude_unset=True)
    now = utcnow()
    job = Job(
        user_id=new.user_id,
        kind=kind.name,
        status="waiting" if new.depends_on else "queued",
        input=data,
        priority=new.priority,
        attempts=0,
        max_attempts=new.max_attempts or kind.max_attempts,
        timeout_s=new.timeout_s or kind.timeout_s or default_timeout,
        run_at=max(new.run_at, now) if new.run_at else now,
        depends_on=list(new.depends_on),
        session_id=new.session_id,
        agent_id=new.agent_id,
        workflow_id=new.workflow_id,
        step_key=new.step_key,
        created_at=now,
    )
    db.add(job)
    await db.flush()
    if new.depends_on:
        if not await _check_dependencies(db, new.user_id, new.depends_on):
            job.status = "queued"
        db.add_all(JobDependency(job_id=job.id, depends_on_id=d) for d in new.depends_on)
        await db.flush()
    if job.status == "queued":
        queue.wake(db, job.kind)  # first: a worker need not wait for the announcements
        queue.emit_job(db, job, "job.queued")
    return job


async def _check_dependencies(
    db: AsyncSession, user_id: str | None, depends_on: Sequence[str]
) -> bool:
    """True when some dependency is unfinished; 422 for foreign, missing, failed or canceled.

    Called once the job row is written: the dependencies are read under a row lock
    (PostgreSQL) or the write lock this transaction then holds (SQLite), so a dependency
    completing at this moment either sees the new edges or is seen completed; a job is never
    left waiting on a dependency that completed.
    """
    rows = (
        await db.execute(
            select(Job.id, Job.status)
            .where(Job.id.in_(depends_on), Job.user_id == user_id)
            .with_for_update()
        )
    ).all()
    statuses = dict(rows)
    for index, job_id in enumerate(depends_on):
        status = statuses.get(job_id)
        problem = (
            "not found"
            if status is None
            else f"is {status}; retry it first"
            if status in RETRYABLE_STATUSES
            else None
        )
        if problem:
            raise ValidationFailed(
                f"Dependency {job_id!r} {problem}.",
                errors=[FieldError(field=f"depends_on.{index}", message=problem)],
            )
    return any(status != "completed" for status in statuses.values())


def owned_jobs(user_id: str) -> Select[Job]:
    return select(Job).where(Job.user_id == user_id)


async def get_job(db: AsyncSession, user_id: str, job_id: str, *, lock: bool = False) -> Job:
    stmt = owned_jobs(user_id).where(Job.id == job_id)
    if lock:
        stmt = stmt.with_for_update()
    job = await db.scalar(stmt)
    if job is None:
        raise NotFound(f"Job {job_id!r} not found.")
    return job


async def list_jobs(
    db: AsyncSession,
    user_id: str,
    params: PageParams,
    *,
    status: str | None = None,
    kind: str | None = None,
    workflow_id: str | None = None,
) -> tuple[Sequence[Job], bool, str | None]:
    stmt = owned_jobs(user_id)
    if status is not None:
        stmt = stmt.where(Job.status == status)
    if kind is not None:
        stmt = stmt.where(Job.kind == kind)
    if workflow_id is not None:
        stmt = stmt.where(Job.workflow_id == workflow_id)
    return await keyset_page(db, stmt, Job.id, params, "job")


async def cancel_job(db: AsyncSession, user_id: str, job_id: str) -> Job:
    """Cancel a waiting, queued or running job (a running one is interrupted within a second)
    and, transitively, the jobs waiting on it; 409 once it has finished."""
    job = await get_job(db, user_id, job_id, lock=True)
    return await cancel(db, job)


async def cancel(db: AsyncSession, job: Job) -> Job:
    if job.status in FINAL_STATUSES:
        raise Conflict(f"Job {job.id!r} is already {job.status}.")
    was_running = job.status == "running"
    now = utcnow()
    stmt = (
        update(Job)
        .where(Job.id == job.id, Job.status.in_(OPEN_STATUSES))
        .values(
            status="canceled",
            finished_at=now,
            lease_expires_at=None,
            error={"type": "canceled", "message": "Canceled by request."},
        )
        .execution_options(synchronize_session=False)
    )
    await db.execute(stmt)
    await db.refresh(job)
    invalidate_cache_of(db, job.user_id)
    queue.emit_job(db, job, "job.canceled")
    if was_running:
        queue.interrupt(db, job.id)
    await queue.cancel_dependents(db, job)
    return job


async def retry_job(db: AsyncSession, user_id: str, job_id: str) -> Job:
    """Run a failed or canceled job again from its first attempt; the jobs its failure canceled
    wait for it again. 409 for a job that has not finished or that completed."""
    job = await get_job(db, user_id, job_id, lock=True)
    if job.status not in RETRYABLE_STATUSES:
        raise Conflict(f"Job {job.id!r} is {job.status}; only failed or canceled jobs retry.")
    await reopen(db, job)
    return job


async def reopen(db: AsyncSession, job: Job) -> None:
    waiting = bool(job.depends_on) and await _unfinished(db, job)
    job.status = "waiting" if waiting else "queued"
    job.attempts = 0
    job.error = job.result = job.progress = None
    job.started_at = job.finished_at = job.duration_ms = None
    job.worker_id = None
    job.run_at = utcnow()
    await db.flush()
    if not waiting:
        queue.emit_job(db, job, "job.queued")
        queue.wake(db, job.kind)
    dependents = (
        await db.scalars(
            select(Job)
            .join(JobDependency, JobDependency.job_id == Job.id)
            .where(JobDependency.depends_on_id == job.id, Job.status == "canceled")
        )
    ).all()
    for dependent in dependents:
        if (dependent.error or {}).get("type") == "dependency_failed":
            await reopen(db, dependent)


async def _unfinished(db: AsyncSession, job: Job) -> bool:
    statuses = (await db.scalars(select(Job.status).where(Job.id.in_(job.depends_on)))).all()
    return any(s != "completed" for s in statuses)


async def delete_job(db: AsyncSession, user_id: str, job_id: str) -> None:
    """Delete a finished job; 409 while it may still run."""
    job = await get_job(db, user_id, job_id, lock=True)
    if job.status not in FINAL_STATUSES:
        raise Conflict(f"Job {job.id!r} is {job.status}; cancel it before deleting it.")
    await db.execute(delete(Job).where(Job.id == job.id))
    invalidate_cache_of(db, job.user_id)


async def purge_finished(
    db: AsyncSession, cutoff: datetime, statuses: Sequence[str] = FINAL_STATUSES
) -> int:
    """Delete every user's jobs in `statuses` that finished before `cutoff`, and the
    workflows left without a step; how many jobs."""
    result = await db.execute(delete(Job).where(Job.status.in_(statuses), Job.finished_at < cutoff))
    await db.execute(
        delete(Workflow).where(~select(Job.id).where(Job.workflow_id == Workflow.id).exists())
    )
    deleted = int(result.rowcount)  # type: ignore[attr-defined]
    if deleted:
        invalidate_every_cache(db)
    return deleted
