"""Messages: append with exact session counters, and pages by `(session_id, id)`.

An append updates its session with one `UPDATE ... SET message_count = message_count + 1`
in the same transaction as the insert: concurrent appends serialize on the session row and
no count is lost, and the insert and the counters commit or roll back together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from agenthub.cache.stale import invalidate_cache_of
from agenthub.core.errors import NotFound
from agenthub.core.events import emit
from agenthub.core.ids import new_id
from agenthub.core.pagination import PageParams, keyset_page
from agenthub.db.base import utcnow
from agenthub.db.models.sessions import ChatSession, Message
from agenthub.db.unit import Row, Unit
from agenthub.sessions.schemas import MessageCreate, MessageOut
from agenthub.sessions.service import (
    SESSION,
    emit_session,
    enforce_limit,
    ensure_writable,
    lock_owner,
)


async def append_message(
    db: AsyncSession,
    chat: ChatSession,
    *,
    role: str,
    content: str,
    limit: int,
    metadata: dict[str, Any] | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    message_id: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    tool_call_id: str | None = None,
) -> Message:
    """Add a message; an archived session becomes active again (the chat goes on), which may
    archive the least recently active other one. A deleted session is 409.

    `message_id` (a fresh `new_id("msg")`) lets a job name the message in its result before
    the message is written."""
    ensure_writable(chat)
    reactivating = chat.archived_at is not None
    if reactivating:
        await lock_owner(db, chat.user_id)
    now = utcnow()
    row = _new_row(
        chat.id,
        chat.user_id,
        message_id=message_id,
        role=role,
        content=content,
        metadata=metadata,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        now=now,
        tool_calls=tool_calls,
        tool_call_id=tool_call_id,
    )
    # Inserted as a row, not through the unit of work (a third of an append's time).
    await db.execute(_INSERT_MESSAGE, row)
    invalidate_cache_of(db, chat.user_id)  # the owner's cached stats are stale
    counters = await db.execute(
        _COUNT_MESSAGE, _counts(chat.id, prompt_tokens, completion_tokens, now)
    )
    # The session's new state, given to the loaded object as its committed state (as a
    # refresh would): nothing is left for the unit of work to write.
    for key, value in counters.one()._mapping.items():
        set_committed_value(chat, _SESSION_ATTRIBUTES[key], value)
    if reactivating:
        await enforce_limit(db, chat, limit, now)
    message = Message(**{_ATTRIBUTE_KEYS[name]: value for name, value in row.items()})
    emit(db, SESSION(chat.id), "message.created", _event(row))
    emit_session(db, chat)
    return message


async def append_to_active(unit: Unit, chat: Row, new: MessageCreate) -> Row:
    """`append_new` on a `db.unit.Unit`, for a session read as a row that is neither deleted
    nor archived (no other session may need archiving): the same statements and events.
    The new message's row."""
    now = utcnow()
    row = _new_row(
        chat["id"],
        chat["user_id"],
        role=new.role,
        content=new.content,
        metadata=new.metadata,
        prompt_tokens=new.prompt_tokens,
        completion_tokens=new.completion_tokens,
        now=now,
        **_tool_fields(new),
    )
    await unit.execute(_INSERT_MESSAGE, row)
    invalidate_cache_of(unit, chat["user_id"])
    counts = _counts(chat["id"], new.prompt_tokens, new.completion_tokens, now)
    updated = await unit.row(_COUNT_MESSAGE, counts)
    if updated is None:  # gone since it was read
        raise NotFound(f"Session {chat['id']!r} not found.")
    emit(unit, SESSION(chat["id"]), "message.created", _event(row))
    emit_session(unit, updated)
    return row


def _new_row(
    session_id: str,
    user_id: str,
    *,
    role: str,
    content: str,
    metadata: dict[str, Any] | None,
    prompt_tokens: int,
    completion_tokens: int,
    now: datetime,
    message_id: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    tool_call_id: str | None = None,
) -> Row:
    """A new message's values by column name."""
    return {
        "id": message_id or new_id("msg"),
        "user_id": user_id,
        "session_id": session_id,
        "role": role,
        "content": content,
        "metadata": metadata or {},
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "created_at": now,
        "tool_calls": tool_calls,
        "tool_call_id": tool_call_id,
    }


def _counts(session_id: str, prompt_tokens: int, completion_tokens: int, now: datetime) -> Row:
    """The parameters of `_COUNT_MESSAGE`."""
    return {
        "session_id": session_id,
        "added_prompt": prompt_tokens,
        "added_completion": completion_tokens,
        "now": now,
    }


async def append_new(
    db: AsyncSession, chat: ChatSession, new: MessageCreate, limit: int
) -> Message:
    """`append_message` of a client's message as `POST .../messages` takes it."""
    return await append_message(
        db,
        chat,
        role=new.role,
        content=new.content,
        limit=limit,
        metadata=new.metadata,
        prompt_tokens=new.prompt_tokens,
        completion_tokens=new.completion_tokens,
        **_tool_fields(new),
    )


def _tool_fields(new: MessageCreate) -> dict[str, Any]:
    """A client's message's tool call pairing, as `append_message` takes it."""
    calls = None if new.tool_calls is None else [c.model_dump() for c in new.tool_calls]
    return {"tool_calls": calls, "tool_call_id": new.tool_call_id}


_INSERT_MESSAGE = insert(cast(Table, Message.__table__))
_SESSIONS = cast(Table, ChatSession.__table__)
_NOW = bindparam("now", type_=ChatSession.last_activity_at.type)
_COUNT_MESSAGE = (
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("session_id"))
    .values(
        message_count=_SESSIONS.c.message_count + 1,
        prompt_tokens=_SESSIONS.c.prompt_tokens + bindparam("added_prompt"),
        completion_tokens=_SESSIONS.c.completion_tokens + bindparam("added_completion"),
        # Never backwards, whatever order concurrent appends commit in.
        last_activity_at=case(
            (_SESSIONS.c.last_activity_at > _NOW, _SESSIONS.c.last_activity_at), else_=_NOW
        ),
        archived_at=None,
        updated_at=_NOW,
    )
    .returning(*_SESSIONS.c)
)
"""One more message in the session: its counters, activity and status in one statement."""
_SESSION_ATTRIBUTES = {a.columns[0].name: a.key for a in ChatSession.__mapper__.column_attrs}
_ATTRIBUTE_KEYS = {a.columns[0].name: a.key for a in Message.__mapper__.column_attrs}


def _event(row: Row) -> dict[str, Any]:
    return MessageOut.model_validate(row).model_dump(mode="json")


async def get_message(db: AsyncSession, chat: ChatSession, message_id: str) -> Message:
    message = await db.scalar(
        select(Message).where(Message.session_id == chat.id, Message.id == message_id)
    )
    if message is None:
        raise NotFound(f"Message {message_id!r} not found.")
    return message


async def list_messages(
    db: AsyncSession,
    chat: ChatSession,
    params: PageParams,
    *,
    role: str | None = None,
    offset: int | None = None,
) -> tuple[Sequence[Message], bool, str | None]:
    """A page in `params.order` (chronological by default) by cursor or by offset."""
    stmt = select(Message).where(Message.session_id == chat.id)
    if role is not None:
        stmt = stmt.where(Message.role == role)
    return await keyset_page(db, stmt, Message.id, params, "msg", offset=offset)


async def last_messages(
    db: AsyncSession, chat: ChatSession, count: int, *, until: str | None = None
) -> list[Message]:
    """The last `count` messages of the session (up to and including message `until`),
    oldest first."""
    if count <= 0:
        return []
    stmt = select(Message).where(Message.session_id == chat.id)
    if until is not None:
        stmt = stmt.where(Message.id <= until)
    stmt = stmt.order_by(Message.id.desc()).limit(count)
    return list(reversed((await db.scalars(stmt)).all()))
