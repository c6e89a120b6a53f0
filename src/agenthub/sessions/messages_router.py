"""`/v1/sessions/{session_id}/messages` routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from agenthub.core.errors import problem_responses
from agenthub.core.pagination import Page, PageParams, paging
from agenthub.db.session import DbSession
from agenthub.jobs import service as jobs
from agenthub.jobs.schemas import JobOut
from agenthub.sessions import messages, tasks
from agenthub.sessions.deps import OwnedSession, SessionLimit
from agenthub.sessions.schemas import MessageCreate, MessageOut, MessageWithJob, Role
from agenthub.web.caller import AppSettings
from agenthub.web.idempotency import idempotent

router = APIRouter(prefix="/{session_id}/messages", tags=["messages"])

# Chronological by default: a chat reads top to bottom.
Chronological = Annotated[PageParams, Depends(paging("asc"))]
MessageId = Annotated[str, Path(max_length=64)]
MAX_OFFSET = 1_000_000_000


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MessageOut | MessageWithJob,
    responses=problem_responses(404, 409, 422),
)
@idempotent(status.HTTP_201_CREATED)
async def create_message(
    body: MessageCreate,
    chat: OwnedSession,
    db: DbSession,
    limit: SessionLimit,
    settings: AppSettings,
) -> MessageOut | MessageWithJob:
    """Append a message; the session's `message_count`, token totals and `last_activity_at`
    change in the same transaction.

    A message to an archived session makes it active again (which may archive the least
    recently active other one); a deleted session is 409 until restored. With
    `"respond": true` (user messages only) the same transaction enqueues an `agent.reply`
    job and the answer is `{"message", "job"}`: the reply streams as `message.delta` events
    on `session:{id}` and is stored as an assistant message when the job completes.
    """

    message = await messages.append_new(db, chat, body, limit)
    out = MessageOut.model_validate(message)
    if not body.respond:
        return out
    job = await jobs.enqueue(
        db,
        jobs.NewJob(
            kind=tasks.KIND,
            input={"session_id": chat.id, "message_id": message.id},
            user_id=chat.user_id,
            session_id=chat.id,
            agent_id=chat.agent_id,
        ),
        default_timeout=settings.job_default_timeout_seconds,
    )
    return MessageWithJob(message=out, job=JobOut.model_validate(job))


@router.get("", response_model=Page[MessageOut], responses=problem_responses(404, 422))
async def list_messages(
    chat: OwnedSession,
    db: DbSession,
    paging: Chronological,
    role: Role | None = None,
    offset: Annotated[
        int | None,
        Query(ge=0, le=MAX_OFFSET, description="Skip this many (instead of a cursor)"),
    ] = None,
) -> Page[MessageOut]:
    """Messages oldest first (`order=desc` for newest first), by cursor (`after`/`before`,
    fast at any depth) or by `offset`; not both."""
    rows, has_more, cursor = await messages.list_messages(
        db, chat, paging, role=role, offset=offset
    )
    return Page(
        data=[MessageOut.model_validate(r) for r in rows], has_more=has_more, next_cursor=cursor
    )


@router.get("/{message_id}", response_model=MessageOut, responses=problem_responses(404))
async def get_message(chat: OwnedSession, db: DbSession, message_id: MessageId) -> MessageOut:
    return MessageOut.model_validate(await messages.get_message(db, chat, message_id))
