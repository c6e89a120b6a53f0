"""`/v1/jobs` routes and the administrators' cleanup."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response, status

from agenthub.cache.base import AppCache
from agenthub.cache.stale import ALL_USERS
from agenthub.core.errors import AgentHubError, problem_responses
from agenthub.core.pagination import CursorPaging, Page
from agenthub.db.base import utcnow
from agenthub.db.models.jobs import Job
from agenthub.db.session import DbSession
from agenthub.jobs import service
from agenthub.jobs.schemas import (
    JobBulk,
    JobBulkItem,
    JobBulkOutcome,
    JobCleanup,
    JobCleanupOutcome,
    JobCreate,
    JobOut,
    JobStats,
    JobStatus,
    QueueInfo,
)
from agenthub.jobs.stats import job_stats, queue_info
from agenthub.jobs.worker import WORKERS_KEY
from agenthub.realtime.broker import BrokerUnavailable
from agenthub.realtime.router import hub_of
from agenthub.web.caller import AdminUser, AppSettings, CurrentUser
from agenthub.web.idempotency import idempotent

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=problem_responses(401))
admin_router = APIRouter(
    prefix="/v1/admin/jobs", tags=["admin"], responses=problem_responses(401, 403)
)

JobId = Annotated[str, Path(max_length=64, description="A job id (`job_...`)")]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=problem_responses(422),
)
@idempotent(status.HTTP_202_ACCEPTED)
async def create_job(
    body: JobCreate,
    user: CurrentUser,
    db: DbSession,
    settings: AppSettings,
) -> JobOut:
    """Enqueue a job of a registered kind (`llm.complete`, `agent.reply`, `spec.generate`,
    ...); its input is validated by the kind (422). Follow it on `job:{id}` or poll
    `GET /v1/jobs/{id}`."""

    job = await service.enqueue(
        db,
        service.NewJob(
            kind=body.kind,
            input=body.input,
            user_id=user.id,
            priority=body.priority,
            depends_on=body.depends_on,
            max_attempts=body.max_attempts,
            timeout_s=body.timeout_s,
            run_at=body.run_at,
        ),
        default_timeout=settings.job_default_timeout_seconds,
    )
    return JobOut.model_validate(job)


@router.get("", response_model=Page[JobOut], responses=problem_responses(422))
async def list_jobs(
    user: CurrentUser,
    db: DbSession,
    paging: CursorPaging,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    workflow_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[JobOut]:
    """The caller's jobs, newest first."""
    rows, has_more, cursor = await service.list_jobs(
        db, user.id, paging, status=status_filter, kind=kind, workflow_id=workflow_id
    )
    return Page(
        data=[JobOut.model_validate(j) for j in rows], has_more=has_more, next_cursor=cursor
    )


@router.get("/stats", response_model=JobStats)
async def stats(user: CurrentUser, db: DbSession, cache: AppCache) -> Response:
    """Counts by status and kind, throughput, and run and wait time percentiles of the
    caller's jobs (of all jobs for administrators). Cached until a job of yours (any job, for
    administrators) changes (`X-Cache: hit|miss`), so the last-minute and last-hour counts
    may lag by up to AGENTHUB_CACHE_TTL_SECONDS."""
    owner = None if user.is_admin else user.id
    return await cache.respond(owner or ALL_USERS, "jobs.stats", lambda: job_stats(db, owner))


@router.get("/queue", response_model=QueueInfo)
async def queue(request: Request, user: CurrentUser, db: DbSession) -> QueueInfo:
    """Queue depth per kind, the oldest queued job's age, running jobs (the caller's; all for
    administrators) and the live workers."""
    try:
        workers: list[dict[str, Any]] = await hub_of(request).broker.members(WORKERS_KEY)
    except BrokerUnavailable:
        workers = []
    return await queue_info(db, None if user.is_admin else user.id, workers)


@router.post("/bulk", response_model=JobBulkOutcome, responses=problem_responses(422))
async def bulk(body: JobBulk, user: CurrentUser, db: DbSession) -> JobBulkOutcome:
    """`cancel`, `retry` or `delete` several jobs; each id gets the answer its single request
    would have had (partial success)."""
    results: list[JobBulkItem] = []
    for job_id in body.ids:
        try:
            async with db.begin_nested():
                job: Job | None = None
                if body.action == "cancel":
                    job = await service.cancel_job(db, user.id, job_id)
                elif body.action == "retry":
                    job = await service.retry_job(db, user.id, job_id)
                else:
                    await service.delete_job(db, user.id, job_id)
        except AgentHubError as exc:
            results.append(
                JobBulkItem(id=job_id, ok=False, status=exc.status, error=exc.detail or exc.title)
            )
            continue
        out = JobOut.model_validate(job) if job is not None else None
        code = status.HTTP_204_NO_CONTENT if job is None else status.HTTP_200_OK
        results.append(JobBulkItem(id=job_id, ok=True, status=code, job=out))
    succeeded = sum(r.ok for r in results)
    return JobBulkOutcome(results=results, succeeded=succeeded, failed=len(results) - succeeded)


@router.get("/{job_id}", response_model=JobOut, responses=problem_responses(404))
async def get_job(job_id: JobId, user: CurrentUser, db: DbSession) -> JobOut:
    """The job's status, progress, result or error: the polling fallback of `job:{id}`."""
    return JobOut.model_validate(await service.get_job(db, user.id, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut, responses=problem_responses(404, 409))
async def cancel_job(job_id: JobId, user: CurrentUser, db: DbSession) -> JobOut:
    """Cancel a waiting, queued or running job (a running one stops within a second) and the
    jobs that depend on it; 409 if it already finished."""
    return JobOut.model_validate(await service.cancel_job(db, user.id, job_id))


@router.post("/{job_id}/retry", response_model=JobOut, responses=problem_responses(404, 409))
async def retry_job(job_id: JobId, user: CurrentUser, db: DbSession) -> JobOut:
    """Queue a failed or canceled job again with a fresh set of attempts."""
    return JobOut.model_validate(await service.retry_job(db, user.id, job_id))


@router.delete(
    "/{job_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 409)
)
async def delete_job(job_id: JobId, user: CurrentUser, db: DbSession) -> None:
    """Delete a finished job."""
    await service.delete_job(db, user.id, job_id)


@admin_router.post("/cleanup", response_model=JobCleanupOutcome, responses=problem_responses(422))
async def cleanup(body: JobCleanup, _: AdminUser, db: DbSession) -> JobCleanupOutcome:
    """Delete every user's finished jobs that finished more than `older_than_days` ago."""
    cutoff = utcnow() - timedelta(days=body.older_than_days)
    return JobCleanupOutcome(deleted=await service.purge_finished(db, cutoff, body.statuses))
