"""`/v1/sessions` routes: sessions here, messages and tool executions in their own modules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from agenthub.cache.base import AppCache
from agenthub.core.errors import problem_responses
from agenthub.core.pagination import Page, PageParams, page_params
from agenthub.db.models.sessions import ChatSession
from agenthub.db.session import DbSession, get_database
from agenthub.sessions import export, messages, service
from agenthub.sessions.deps import OwnedSession, SessionLimit
from agenthub.sessions.messages_router import router as messages_router
from agenthub.sessions.schemas import (
    MessageOut,
    SessionChange,
    SessionCreate,
    SessionDetail,
    SessionExport,
    SessionOut,
    SessionPatch,
    SessionStats,
    SessionStatus,
)
from agenthub.sessions.tools_router import router as tools_router
from agenthub.web.caller import CurrentUser
from agenthub.web.idempotency import idempotent

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=problem_responses(401))

Paging = Annotated[PageParams, Depends(page_params)]


def _change(chat: ChatSession, archived: list[ChatSession]) -> SessionChange:
    return SessionChange(
        session=SessionOut.model_validate(chat),
        archived=[SessionOut.model_validate(a) for a in archived],
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SessionChange,
    responses=problem_responses(409, 422),
)
@idempotent(status.HTTP_201_CREATED)
async def create_session(
    body: SessionCreate,
    user: CurrentUser,
    db: DbSession,
    limit: SessionLimit,
) -> SessionChange:
    """Start a chat with one of your agents (`agent_id`) or an agent type (`agent_type`).

    At most AGENTHUB_MAX_SESSIONS_PER_AGENT_TYPE sessions per agent type are active: creating
    one more archives the least recently active one, listed in `archived` (it stays readable
    and can be restored). Unknown `agent_id` or `project_id` → 422.
    """

    chat, archived = await service.create_session(
        db,
        user.id,
        limit=limit,
        agent_id=body.agent_id,
        agent_type=body.agent_type,
        title=body.title,
        project_id=body.project_id,
        metadata=body.metadata,
    )
    return _change(chat, archived)


@router.get("", response_model=Page[SessionOut], responses=problem_responses(422))
async def list_sessions(
    user: CurrentUser,
    db: DbSession,
    paging: Paging,
    agent_type: Annotated[str | None, Query(max_length=64)] = None,
    project_id: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Matches the title")] = None,
    session_status: Annotated[
        SessionStatus | None,
        Query(alias="status", description="Only this status (deleted ones appear only here)"),
    ] = None,
    include_archived: Annotated[
        bool, Query(description="Active and archived sessions (ignored with `status`)")
    ] = False,
) -> Page[SessionOut]:
    """Your sessions, most recently active first (`order=asc` for the reverse); active ones
    unless `include_archived` or `status` says otherwise."""
    rows, has_more, cursor = await service.list_sessions(
        db,
        user.id,
        paging,
        agent_type=agent_type,
        project_id=project_id,
        q=q,
        status=session_status,
        include_archived=include_archived,
    )
    return Page(
        data=[SessionOut.model_validate(r) for r in rows], has_more=has_more, next_cursor=cursor
    )


@router.get("/stats", response_model=SessionStats)
async def session_stats(user: CurrentUser, db: DbSession, cache: AppCache) -> Response:
    """Per agent type and in total: sessions (not deleted), messages and tokens. Cached
    until your next change (`X-Cache: hit|miss`)."""
    return await cache.respond(user.id, "sessions.stats", lambda: service.stats(db, user.id))


@router.get("/{session_id}", response_model=SessionDetail, responses=problem_responses(404, 422))
async def get_session(
    chat: OwnedSession,
    db: DbSession,
    last: Annotated[
        int, Query(alias="messages", ge=0, le=200, description="Embed the last N messages")
    ] = 0,
) -> SessionDetail:
    """A session in any status, with its last `messages` messages oldest first."""
    recent = await messages.last_messages(db, chat, last)
    return SessionDetail(
        **SessionOut.model_validate(chat).model_dump(),
        messages=[MessageOut.model_validate(m) for m in recent],
    )


@router.patch(
    "/{session_id}", response_model=SessionOut, responses=problem_responses(404, 409, 422)
)
async def patch_session(body: SessionPatch, chat: OwnedSession, db: DbSession) -> SessionOut:
    """Rename and/or replace the metadata; a deleted session is 409 until restored."""
    service.update_session(db, chat, title=body.title, metadata=body.metadata)
    return SessionOut.model_validate(chat)


@router.delete(
    "/{session_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404)
)
async def delete_session(chat: OwnedSession, db: DbSession) -> Response:
    """Move to the trash: hidden from lists (except `status=deleted`), restorable."""
    service.delete_session(db, chat)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{session_id}/restore", response_model=SessionChange, responses=problem_responses(404)
)
async def restore_session(chat: OwnedSession, db: DbSession, limit: SessionLimit) -> SessionChange:
    """Undo a delete or an archive: the session becomes active and most recent, which may
    archive the least recently active other one (listed in `archived`)."""
    archived = await service.restore_session(db, chat, limit)
    return _change(chat, archived)


@router.get(
    "/{session_id}/export",
    response_model=SessionExport,
    responses={
        200: {"content": {"text/markdown": {"schema": {"type": "string"}}}},
        **problem_responses(404, 422),
    },
)
async def export_session(
    chat: OwnedSession,
    request: Request,
    export_format: Annotated[Literal["json", "markdown"], Query(alias="format")] = "json",
) -> StreamingResponse:
    """Download the whole session: JSON (session, messages, tool executions) or a Markdown
    transcript, as an attachment."""
    head = SessionOut.model_validate(chat)
    exporter = export.EXPORTERS[export_format]
    database = get_database(request)

    async def stream() -> AsyncIterator[str]:
        # Its own read session: the request's unit of work ends before the body is sent.
        async with database.sessions() as db:
            async for chunk in exporter.chunks(db, head):
                yield chunk

    name = export.filename(head, exporter.extension)
    return StreamingResponse(
        stream(),
        media_type=exporter.media_type,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


router.include_router(messages_router)
router.include_router(tools_router)
