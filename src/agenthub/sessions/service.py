"""Sessions: create within the per-agent-type limit, list, patch, soft delete, restore, stats.

At most `limit` sessions per user and agent type are active; the request that makes one more
active (create, restore, a message to an archived session) archives the least recently active
others. Archiving runs after that request's own write, with the user's row locked on
PostgreSQL (SQLite serializes writers), so concurrent requests never leave more than `limit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.cache.stale import invalidate_every_cache
from agenthub.core.channels import USER, ChannelFamily
from agenthub.core.errors import Conflict, FieldError, ValidationFailed
from agenthub.core.events import Recorder, emit
from agenthub.core.ownership import check_owned_reference, owned_by
from agenthub.core.pagination import PageParams, contains_text, keyset_page
from agenthub.db.base import utcnow
from agenthub.db.models.agents import Agent
from agenthub.db.models.auth import User
from agenthub.db.models.projects import Project
from agenthub.db.models.sessions import ChatSession
from agenthub.db.unit import Row
from agenthub.sessions.schemas import AgentTypeStats, SessionOut, SessionStats, StatsRow

DEFAULT_TITLE = "New chat"

SESSION = ChannelFamily("session")
"""A session's messages, tool executions and changes, for its owner."""


def emit_session(db: Recorder, chat: ChatSession | Row, event: str = "session.updated") -> None:
    """Publish the session's state (an object, or a row by column) to its own channel and to
    its owner's."""
    data = SessionOut.model_validate(chat).model_dump(mode="json")
    owner = chat["user_id"] if isinstance(chat, dict) else chat.user_id
    emit(db, SESSION(data["id"]), event, data)
    emit(db, USER(owner), event, data)


def ensure_writable(chat: ChatSession) -> None:
    """409 for a deleted session: it is read-only until restored."""
    if chat.deleted_at is not None:
        raise Conflict(f"Session {chat.id!r} is deleted; restore it to change it.")


async def lock_owner(db: AsyncSession, user_id: str) -> None:
    """Serialize limit enforcement per user (`FOR NO KEY UPDATE`; a no-op on SQLite)."""
    await db.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))


async def enforce_limit(
    db: AsyncSession, chat: ChatSession, limit: int, now: datetime
) -> list[ChatSession]:
    """Archive the least recently active sessions beyond `limit`, never `chat` itself.

    Call after `lock_owner` and after the request's own write. `limit <= 0` means no limit.
    """
    if limit <= 0:
        return []
    others = (
        owned_by(ChatSession, chat.user_id)
        .where(
            ChatSession.agent_type == chat.agent_type,
            ChatSession.archived_at.is_(None),
            ChatSession.deleted_at.is_(None),
            ChatSession.id != chat.id,
        )
        .order_by(ChatSession.last_activity_at.desc(), ChatSession.id.desc())
        .offset(limit - 1)
    )
    archived = list((await db.scalars(others)).all())
    for old in archived:
        old.archived_at = now
        old.updated_at = now
    await db.flush()
    for old in archived:
        emit_session(db, old)
    return archived


def _invalid(field: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"`{field}` {message}.", errors=[FieldError(field=field, message=message)]
    )


async def create_session(
    db: AsyncSession,
    user_id: str,
    *,
    limit: int,
    agent_id: str | None = None,
    agent_type: str | None = None,
    title: str | None = None,
    project_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[ChatSession, list[ChatSession]]:
    """A new active session and the sessions archived to make room for it."""
    if agent_id is not None:
        await check_owned_reference(db, Agent, agent_id, user_id, field="agent_id")
        agent = await db.get_one(Agent, agent_id)
        if agent_type is not None and agent_type != agent.type:
            raise _invalid("agent_type", f"must match the agent's type {agent.type!r}")
        agent_type, project_id = agent.type, project_id or agent.project_id
    if agent_type is None:
        raise _invalid("agent_id", "is required unless agent_type is given")
    await check_owned_reference(db, Project, project_id, user_id, field="project_id")
    await lock_owner(db, user_id)
    now = utcnow()
    chat = ChatSession(
        user_id=user_id,
        agent_id=agent_id,
        agent_type=agent_type,
        project_id=project_id,
        title=title or DEFAULT_TITLE,
        meta=metadata or {},
        message_count=0,
        prompt_tokens=0,
        completion_tokens=0,
        last_activity_at=now,
        created_at=now,
        updated_at=now,
    )
    db.add(chat)
    await db.flush()
    archived = await enforce_limit(db, chat, limit, now)
    emit_session(db, chat)
    return chat, archived


async def list_sessions(
    db: AsyncSession,
    user_id: str,
    params: PageParams,
    *,
    agent_type: str | None = None,
    project_id: str | None = None,
    q: str | None = None,
    status: str | None = None,
    include_archived: bool = False,
) -> tuple[Sequence[ChatSession], bool, str | None]:
    """A page of the user's sessions, most recently active first (`params.order`).

    `status` wins over `include_archived`; deleted ones appear only with `status="deleted"`.
    """
    stmt = owned_by(ChatSession, user_id)
    if agent_type is not None:
        stmt = stmt.where(ChatSession.agent_type == agent_type)
    if project_id is not None:
        stmt = stmt.where(ChatSession.project_id == project_id)
    if q:
        stmt = stmt.where(contains_text(q, ChatSession.title))
    if status == "deleted":
        stmt = stmt.where(ChatSession.deleted_at.is_not(None))
    else:
        stmt = stmt.where(ChatSession.deleted_at.is_(None))
        if status == "archived":
            stmt = stmt.where(ChatSession.archived_at.is_not(None))
        elif status == "active" or not include_archived:
            stmt = stmt.where(ChatSession.archived_at.is_(None))
    return await keyset_page(
        db, stmt, ChatSession.id, params, "ses", sort_column=ChatSession.last_activity_at
    )


def update_session(
    db: AsyncSession,
    chat: ChatSession,
    *,
    title: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    """Rename and/or replace the metadata object (not an activity: the order stays)."""
    ensure_writable(chat)
    if title is not None:
        chat.title = title
    if metadata is not None:
        chat.meta = metadata
    chat.updated_at = utcnow()
    emit_session(db, chat)


def delete_session(db: AsyncSession, chat: ChatSession) -> None:
    """Soft delete: hidden from lists, read-only, restorable. Deleting twice is a no-op."""
    if chat.deleted_at is not None:
        return
    chat.deleted_at = chat.updated_at = utcnow()
    emit_session(db, chat, "session.deleted")


async def restore_session(db: AsyncSession, chat: ChatSession, limit: int) -> list[ChatSession]:
    """Undo a delete or an archive; the session becomes the most recently active one, which
    may archive another to stay within the limit. Restoring an active session changes nothing."""
    if chat.status == "active":
        return []
    await lock_owner(db, chat.user_id)
    now = utcnow()
    chat.deleted_at = chat.archived_at = None
    chat.last_activity_at = chat.updated_at = now
    await db.flush()
    archived = await enforce_limit(db, chat, limit, now)
    emit_session(db, chat)
    return archived


async def purge_deleted_sessions(db: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Hard-delete up to `limit` sessions moved to the trash before `cutoff`, their messages
    and tool executions with them (the foreign keys cascade); how many sessions."""
    expired = (
        select(ChatSession.id).where(ChatSession.deleted_at < cutoff).limit(limit).scalar_subquery()
    )
    result = await db.execute(delete(ChatSession).where(ChatSession.id.in_(expired)))
    deleted = int(result.rowcount)  # type: ignore[attr-defined]
    if deleted:
        invalidate_every_cache(db)  # their tokens still count in their agents' metrics
    return deleted


def _row(sessions: int, active: int, messages: int, prompt: int, completion: int) -> dict[str, int]:
    return {
        "sessions": sessions,
        "active": active,
        "archived": sessions - active,
        "messages": messages,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


async def stats(db: AsyncSession, user_id: str) -> SessionStats:
    """Sessions (not deleted), messages and tokens per agent type, and their totals."""
    stmt = (
        select(
            ChatSession.agent_type,
            func.count(),
            func.sum(case((ChatSession.archived_at.is_(None), 1), else_=0)),
            func.sum(ChatSession.message_count),
            func.sum(ChatSession.prompt_tokens),
            func.sum(ChatSession.completion_tokens),
        )
        .where(ChatSession.user_id == user_id, ChatSession.deleted_at.is_(None))
        .group_by(ChatSession.agent_type)
        .order_by(ChatSession.agent_type)
    )
    rows: Sequence[Any] = (await db.execute(stmt)).all()
    by_type = [
        AgentTypeStats(agent_type=row[0], **_row(*(int(v or 0) for v in row[1:]))) for row in rows
    ]
    totals = _row(*(sum(int(row[i] or 0) for row in rows) for i in range(1, 6)))
    return SessionStats(by_agent_type=by_type, totals=StatsRow(**totals))
