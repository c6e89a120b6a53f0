"""Ideas: submit one for generation (idea and job in one transaction), read, list, search."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.core.errors import NotFound
from agenthub.core.ids import new_id
from agenthub.core.ownership import owned_by
from agenthub.core.pagination import PageParams, keyset_page
from agenthub.db.models.ideas import Idea
from agenthub.db.models.jobs import Job
from agenthub.ideas.tasks import KIND
from agenthub.jobs import service as jobs
from agenthub.search.service import ideas_matching

PREFIX = "ide"


@dataclass(frozen=True)
class IdeaRecord:
    """An idea and the job that generates it (None once that job was deleted)."""

    idea: Idea
    job: Job | None

    @property
    def status(self) -> str:
        """The job's status; without a job, whether the spec was stored (see `_status`)."""
        if self.job is not None:
            return self.job.status
        return "completed" if self.idea.completed_at is not None else "failed"


def _status() -> ColumnElement[str]:
    """`IdeaRecord.status` in SQL, over `ideas` outer-joined with `jobs`."""
    stored = case((Idea.completed_at.is_not(None), "completed"), else_="failed")
    return func.coalesce(Job.status, stored)


async def create_idea(
    db: AsyncSession,
    user_id: str,
    text: str,
    options: dict[str, Any],
    *,
    default_timeout: float,
) -> tuple[Idea, Job]:
    """Store the idea and enqueue its `spec.generate` job in the caller's transaction."""
    idea_id = new_id(PREFIX)
    job = await jobs.enqueue(
        db,
        jobs.NewJob(kind=KIND, input={"idea_id": idea_id, **options}, user_id=user_id),
        default_timeout=default_timeout,
    )
    idea = Idea(id=idea_id, user_id=user_id, idea=text, options=options, job_id=job.id)
    db.add(idea)
    await db.flush()
    return idea, job


async def get_idea(db: AsyncSession, user_id: str, idea_id: str) -> IdeaRecord:
    row = (
        await db.execute(
            select(Idea, Job)
            .outerjoin(Job, Job.id == Idea.job_id)
            .where(Idea.user_id == user_id, Idea.id == idea_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"Idea {idea_id!r} not found.")
    return IdeaRecord(*row)


async def list_ideas(
    db: AsyncSession,
    user_id: str,
    params: PageParams,
    *,
    q: str | None = None,
    status: str | None = None,
) -> tuple[list[IdeaRecord], bool, str | None]:
    """One page of the user's ideas, newest first; `q` matches words of the idea text or
    title (full-text, as `GET /v1/search?type=ideas`), `status` the generation's status."""
    stmt = owned_by(Idea, user_id)
    if q:
        stmt = stmt.where(ideas_matching(db.get_bind().dialect.name, q))
    if status is not None:
        stmt = stmt.outerjoin(Job, Job.id == Idea.job_id).where(_status() == status)
    ideas, has_more, cursor = await keyset_page(db, stmt, Idea.id, params, PREFIX)
    found = await _jobs(db, [i.job_id for i in ideas if i.job_id is not None])
    records = [IdeaRecord(i, found.get(i.job_id) if i.job_id else None) for i in ideas]
    return records, has_more, cursor


async def _jobs(db: AsyncSession, ids: Sequence[str]) -> dict[str, Job]:
    if not ids:
        return {}
    return {job.id: job for job in (await db.scalars(select(Job).where(Job.id.in_(ids)))).all()}
