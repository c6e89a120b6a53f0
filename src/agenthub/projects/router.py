"""`/v1/projects` routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from agenthub.cache.base import AppCache
from agenthub.core.errors import problem_responses
from agenthub.core.pagination import CursorPaging, Page, SortQuery
from agenthub.db.session import DbSession
from agenthub.projects import service
from agenthub.projects.schemas import (
    ProjectCreate,
    ProjectOut,
    ProjectPatch,
    ProjectStats,
    ProjectStatus,
)
from agenthub.web.caller import CurrentUser
from agenthub.web.idempotency import idempotent

router = APIRouter(prefix="/v1/projects", tags=["projects"], responses=problem_responses(401))

ProjectId = Annotated[str, Path(max_length=64, description="A project id (`prj_...`)")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProjectOut,
    responses=problem_responses(409, 422),
)
@idempotent(status.HTTP_201_CREATED)
async def create_project(body: ProjectCreate, user: CurrentUser, db: DbSession) -> ProjectOut:
    """Create a project (emits `project.created` on `user:{id}`)."""

    project = await service.create_project(
        db,
        user.id,
        name=body.name,
        description=body.description,
        status=body.status,
        meta=body.metadata,
    )
    return ProjectOut.model_validate(project)


@router.get("", response_model=Page[ProjectOut], responses=problem_responses(422))
async def list_projects(
    user: CurrentUser,
    db: DbSession,
    paging: CursorPaging,
    status_filter: Annotated[ProjectStatus | None, Query(alias="status")] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Case-insensitive text in name or description"),
    ] = None,
    sort: SortQuery = "-created_at",
) -> Page[ProjectOut]:
    """The caller's projects, newest first unless `sort` says otherwise."""
    rows, has_more, cursor = await service.list_projects(
        db, user.id, paging, sort=sort, status=status_filter, q=q
    )
    return Page(
        data=[ProjectOut.model_validate(p) for p in rows], has_more=has_more, next_cursor=cursor
    )


@router.get("/stats", response_model=ProjectStats)
async def project_stats(user: CurrentUser, db: DbSession, cache: AppCache) -> Response:
    """Projects by status and, per project, agents, live sessions and tokens used. Cached
    until your next change (`X-Cache: hit|miss`)."""
    return await cache.respond(
        user.id, "projects.stats", lambda: service.project_stats(db, user.id)
    )


@router.get("/{project_id}", response_model=ProjectOut, responses=problem_responses(404))
async def get_project(project_id: ProjectId, user: CurrentUser, db: DbSession) -> ProjectOut:
    return ProjectOut.model_validate(await service.get_project(db, user.id, project_id))


@router.patch("/{project_id}", response_model=ProjectOut, responses=problem_responses(404, 422))
async def update_project(
    project_id: ProjectId, body: ProjectPatch, user: CurrentUser, db: DbSession
) -> ProjectOut:
    """Change the fields sent; `metadata` replaces the whole object."""
    project = await service.update_project(
        db, user.id, project_id, body.model_dump(exclude_unset=True)
    )
    return ProjectOut.model_validate(project)


@router.delete(
    "/{project_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404)
)
async def delete_project(project_id: ProjectId, user: CurrentUser, db: DbSession) -> None:
    """Delete the project; its agents and sessions remain, with `project_id` null."""
    await service.delete_project(db, user.id, project_id)
