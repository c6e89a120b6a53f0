"""Projects: create, list, read, change, delete, and what each project holds."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.core.channels import USER
from agenthub.core.events import emit
from agenthub.core.ownership import get_owned, owned_by
from agenthub.core.pagination import PageParams, contains_text, sorted_keyset_page
from agenthub.core.schemas import apply_changes
from agenthub.db.models.agents import Agent
from agenthub.db.models.projects import PROJECT_STATUSES, Project
from agenthub.db.models.sessions import ChatSession
from agenthub.projects.schemas import ProjectOut, ProjectStats, ProjectUsage

PREFIX = "prj"


def _emit_project(db: AsyncSession, project: Project, event: str) -> None:
    data = ProjectOut.model_validate(project).model_dump(mode="json")
    emit(db, USER(project.user_id), f"project.{event}", data)


async def create_project(
    db: AsyncSession,
    user_id: str,
    *,
    name: str,
    description: str,
    status: str,
    meta: dict[str, Any],
) -> Project:
    project = Project(user_id=user_id, name=name, description=description, status=status, meta=meta)
    db.add(project)
    await db.flush()
    _emit_project(db, project, "created")
    return project


async def list_projects(
    db: AsyncSession,
    user_id: str,
    params: PageParams,
    *,
    sort: str,
    status: str | None = None,
    q: str | None = None,
) -> tuple[Sequence[Project], bool, str | None]:
    """One page of the user's projects; `q` matches name or description, any case."""
    stmt = owned_by(Project, user_id)
    if status is not None:
        stmt = stmt.where(Project.status == status)
    if q:
        stmt = stmt.where(contains_text(q, Project.name, Project.description))
    return await sorted_keyset_page(db, stmt, Project, params, PREFIX, sort)


async def get_project(db: AsyncSession, user_id: str, project_id: str) -> Project:
    return await get_owned(db, Project, project_id, user_id, what="Project")


async def update_project(
    db: AsyncSession, user_id: str, project_id: str, changes: Mapping[str, Any]
) -> Project:
    """Apply the fields a PATCH sent (`metadata` replaces the whole object)."""
    project = await get_project(db, user_id, project_id)
    renamed = {("meta" if key == "metadata" else key): value for key, value in changes.items()}
    if apply_changes(project, renamed):
        await db.flush()
        _emit_project(db, project, "updated")
    return project


async def delete_project(db: AsyncSession, user_id: str, project_id: str) -> None:
    """Delete the project; its agents and sessions stay, detached (`project_id` null)."""
    project = await get_project(db, user_id, project_id)
    await db.delete(project)
    await db.flush()
    emit(db, USER(user_id), "project.deleted", {"id": project_id})


async def project_stats(db: AsyncSession, user_id: str) -> ProjectStats:
    """Counts by status and, per project, its agents, live sessions and their tokens."""
    agents = (
        select(Agent.project_id, func.count().label("agents"))
        .where(Agent.user_id == user_id, Agent.project_id.is_not(None))
        .group_by(Agent.project_id)
        .subquery()
    )
    sessions = (
        select(
            ChatSession.project_id,
            func.count().label("sessions"),
            func.sum(ChatSession.prompt_tokens).label("prompt"),
            func.sum(ChatSession.completion_tokens).label("completion"),
        )
        .where(
            ChatSession.user_id == user_id,
            ChatSession.project_id.is_not(None),
            ChatSession.deleted_at.is_(None),
        )
        .group_by(ChatSession.project_id)
        .subquery()
    )
    rows = await db.execute(
        select(
            Project.id,
            Project.name,
            Project.status,
            func.coalesce(agents.c.agents, 0),
            func.coalesce(sessions.c.sessions, 0),
            func.coalesce(sessions.c.prompt, 0),
            func.coalesce(sessions.c.completion, 0),
        )
        .outerjoin(agents, agents.c.project_id == Project.id)
        .outerjoin(sessions, sessions.c.project_id == Project.id)
        .where(Project.user_id == user_id)
        .order_by(Project.id.desc())
    )
    usage = [
        ProjectUsage(
            id=id_,
            name=name,
            status=status,
            agents=n_agents,
            sessions=n_sessions,
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
        )
        for id_, name, status, n_agents, n_sessions, prompt, completion in rows.all()
    ]
    by_status = dict.fromkeys(PROJECT_STATUSES, 0)
    for project in usage:
        by_status[project.status] += 1
    return ProjectStats(total=len(usage), by_status=by_status, projects=usage)
