"""Tool executions: what an agent ran in a session, progressing pending → running → final."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from agenthub.core.events import emit
from agenthub.core.pagination import PageParams, keyset_page
from agenthub.db.base import utcnow
from agenthub.db.models.sessions import TOOL_FINAL_STATUSES, ChatSession, Message, ToolExecution
from agenthub.sessions.schemas import ToolOut
from agenthub.sessions.service import SESSION, ensure_writable

# A status may only move forward; the final ones share the last step.
_STEP = {"pending": 0, "running": 1, "succeeded": 2, "failed": 2}
_MAX_DURATION_MS = 2**31 - 1


def _emit_tool(db: AsyncSession, tool: ToolExecution, event: str) -> None:
    emit(
        db,
        SESSION(tool.session_id),
        event,
        ToolOut.model_validate(tool).model_dump(mode="json"),
    )


async def create_tool(
    db: AsyncSession,
    chat: ChatSession,
    *,
    tool_name: str,
    tool_type: str,
    tool_input: dict[str, Any],
    status: str = "pending",
    message_id: str | None = None,
    started_at: datetime | None = None,
) -> ToolExecution:
    """Record a tool call; `message_id` must be a message of the same session (else 422)."""
    ensure_writable(chat)
    if message_id is not None:
        found = await db.scalar(
            select(Message.id).where(Message.session_id == chat.id, Message.id == message_id)
        )
        if found is None:
            raise ValidationFailed(
                f"Message {message_id!r} is not in this session.",
                errors=[FieldError(field="message_id", message="no such message in this session")],
            )
    now = utcnow()
    if status == "running" and started_at is None:
        started_at = now
    tool = ToolExecution(
        user_id=chat.user_id,
        session_id=chat.id,
        message_id=message_id,
        tool_name=tool_name,
        tool_type=tool_type,
        input=tool_input,
        status=status,
        started_at=started_at,
        created_at=now,
        updated_at=now,
    )
    db.add(tool)
    await db.flush()
    _emit_tool(db, tool, "tool.created")
    return tool


async def get_tool(db: AsyncSession, chat: ChatSession, tool_id: str) -> ToolExecution:
    tool = await db.scalar(
        select(ToolExecution).where(
            ToolExecution.session_id == chat.id, ToolExecution.id == tool_id
        )
    )
    if tool is None:
        raise NotFound(f"Tool execution {tool_id!r} not found.")
    return tool


def progress_tool(
    db: AsyncSession,
    chat: ChatSession,
    tool: ToolExecution,
    changes: dict[str, Any],
) -> None:
    """Apply `changes` (any of status, output, error). A final execution admits none (409),
    nor does a step back (running → pending). Reaching a final status sets `finished_at`
    and `duration_ms` (from `started_at`, which going `running` sets when unset)."""
    ensure_writable(chat)
    if tool.status in TOOL_FINAL_STATUSES:
        raise Conflict(f"Tool execution {tool.id!r} is already {tool.status}.")
    now = utcnow()
    status = changes.get("status") or tool.status
    if _STEP[status] < _STEP[tool.status]:
        raise Conflict(f"Tool execution {tool.id!r} cannot go from {tool.status} to {status}.")
    if status == "running" and tool.started_at is None:
        tool.started_at = now
    if status in TOOL_FINAL_STATUSES:
        tool.finished_at = now
        if tool.started_at is not None:
            elapsed = int((now - tool.started_at).total_seconds() * 1000)
            tool.duration_ms = min(max(elapsed, 0), _MAX_DURATION_MS)
    tool.status = status
    if "output" in changes:
        tool.output = changes["output"]
    if "error" in changes:
        tool.error = changes["error"]
    tool.updated_at = now
    _emit_tool(db, tool, "tool.updated")


async def list_tools(
    db: AsyncSession,
    chat: ChatSession,
    params: PageParams,
    *,
    tool_type: str | None = None,
    status: str | None = None,
) -> tuple[Sequence[ToolExecution], bool, str | None]:
    stmt = select(ToolExecution).where(ToolExecution.session_id == chat.id)
    if tool_type is not None:
        stmt = stmt.where(ToolExecution.tool_type == tool_type)
    if status is not None:
        stmt = stmt.where(ToolExecution.status == status)
    return await keyset_page(db, stmt, ToolExecution.id, params, "tex")
