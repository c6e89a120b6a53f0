"""`/v1/generate` and `/v1/ideas` routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from agenthub.core.errors import problem_responses
from agenthub.core.pagination import CursorPaging, Page
from agenthub.db.session import DbSession
from agenthub.ideas import service
from agenthub.ideas.schemas import GenerateAccepted, GenerateRequest, IdeaOut
from agenthub.jobs.schemas import JobStatus
from agenthub.web.caller import AppSettings, CurrentUser
from agenthub.web.idempotency import idempotent

router = APIRouter(tags=["ideas"], responses=problem_responses(401))

IdeaId = Annotated[str, Path(max_length=64, description="An idea id (`ide_...`)")]
Q_MAX = 500


@router.post(
    "/v1/generate",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=GenerateAccepted,
    responses=problem_responses(409, 422),
)
@idempotent(status.HTTP_202_ACCEPTED)
async def generate(
    body: GenerateRequest,
    user: CurrentUser,
    db: DbSession,
    settings: AppSettings,
) -> GenerateAccepted:
    """Store the idea and start a `spec.generate` job that asks the runner for its
    specification. Follow the job on `job:{job_id}` (progress, the model's text as
    `message.delta`) or poll `GET /v1/jobs/{job_id}`; `GET /v1/ideas/{idea_id}` holds the
    specification once the job completed."""

    idea, job = await service.create_idea(
        db,
        user.id,
        body.idea,
        body.options.model_dump(mode="json", exclude_unset=True),
        default_timeout=settings.job_default_timeout_seconds,
    )
    return GenerateAccepted(job_id=job.id, idea_id=idea.id)


@router.get("/v1/ideas", response_model=Page[IdeaOut], responses=problem_responses(422))
async def list_ideas(
    user: CurrentUser,
    db: DbSession,
    paging: CursorPaging,
    q: Annotated[
        str | None,
        Query(
            max_length=Q_MAX,
            pattern=r"^[^\x00]*$",
            description="Words of the idea or its title, all of them (full-text, any case)",
        ),
    ] = None,
    status_filter: Annotated[
        JobStatus | None, Query(alias="status", description="The generation's status")
    ] = None,
) -> Page[IdeaOut]:
    """Your ideas, newest first: the history of the idea-to-spec app."""
    records, has_more, cursor = await service.list_ideas(
        db, user.id, paging, q=(q or "").strip() or None, status=status_filter
    )
    return Page(data=[_out(r) for r in records], has_more=has_more, next_cursor=cursor)


@router.get("/v1/ideas/{idea_id}", response_model=IdeaOut, responses=problem_responses(404))
async def get_idea(idea_id: IdeaId, user: CurrentUser, db: DbSession) -> IdeaOut:
    """The idea, its specification (null until generated), and its generation's status,
    attempts, error, progress and timings."""
    return _out(await service.get_idea(db, user.id, idea_id))


def _out(record: service.IdeaRecord) -> IdeaOut:
    idea, job = record.idea, record.job
    return IdeaOut.model_validate(
        {
            "id": idea.id,
            "idea": idea.idea,
            "options": idea.options,
            "title": idea.title,
            "spec": idea.spec,
            "status": record.status,
            "job_id": idea.job_id,
            "attempts": job.attempts if job else None,
            "error": job.error if job else None,
            "progress": job.progress if job else None,
            "created_at": idea.created_at,
            "started_at": job.started_at if job else None,
            "finished_at": job.finished_at if job else idea.completed_at,
            "duration_ms": job.duration_ms if job else None,
        }
    )
