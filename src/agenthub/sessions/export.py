"""Session export as JSON or a Markdown transcript, streamed in batches.

Messages and tool executions are read by keyset in batches of `BATCH`, so a session with a
million messages is exported in constant memory.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from agenthub.db.base import utcnow
from agenthub.db.models.sessions import Message, ToolExecution
from agenthub.sessions.schemas import MessageOut, SessionOut, ToolOut

BATCH = 500


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


RowT = TypeVar("RowT", bound=_Identified)


async def _rows(
    db: AsyncSession, stmt: Select[RowT], id_column: InstrumentedAttribute[str]
) -> AsyncIterator[RowT]:
    cursor: str | None = None
    while True:
        page = stmt if cursor is None else stmt.where(id_column > cursor)
        rows: Sequence[RowT] = (await db.scalars(page.order_by(id_column).limit(BATCH))).all()
        for row in rows:
            yield row
        if len(rows) < BATCH:
            return
        cursor = rows[-1].id


def _messages(db: AsyncSession, session_id: str) -> AsyncIterator[Message]:
    return _rows(db, select(Message).where(Message.session_id == session_id), Message.id)


def _tools(db: AsyncSession, session_id: str) -> AsyncIterator[ToolExecution]:
    stmt = select(ToolExecution).where(ToolExecution.session_id == session_id)
    return _rows(db, stmt, ToolExecution.id)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


async def json_chunks(db: AsyncSession, head: SessionOut) -> AsyncIterator[str]:
    """`{"session", "messages", "tool_executions", "exported_at"}`, piece by piece."""
    yield '{"session":' + head.model_dump_json() + ',"messages":['
    separator = ""
    async for message in _messages(db, head.id):
        yield separator + MessageOut.model_validate(message).model_dump_json()
        separator = ","
    yield '],"tool_executions":['
    separator = ""
    async for tool in _tools(db, head.id):
        yield separator + ToolOut.model_validate(tool).model_dump_json()
        separator = ","
    yield '],"exported_at":' + _json(_iso(utcnow())) + "}"


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _line(text: str) -> str:
    return " ".join(text.split())


async def markdown_chunks(db: AsyncSession, head: SessionOut) -> AsyncIterator[str]:
    """A readable transcript: a header, one section per message, then the tool executions."""
    total = head.prompt_tokens + head.completion_tokens
    yield (
        f"# {_line(head.title)}\n\n"
        f"- Session: `{head.id}` ({head.status})\n"
        f"- Agent type: {head.agent_type}\n"
        f"- Created: {_iso(head.created_at)}\n"
        f"- Last activity: {_iso(head.last_activity_at)}\n"
        f"- Messages: {head.message_count}\n"
        f"- Tokens: {total} ({head.prompt_tokens} prompt, {head.completion_tokens} completion)\n"
    )
    async for message in _messages(db, head.id):
        yield f"\n---\n\n### {message.role.capitalize()} · {_iso(message.created_at)}\n\n"
        yield message.content.rstrip("\n") + "\n"
    heading = "\n---\n\n## Tool executions\n\n"
    async for tool in _tools(db, head.id):
        duration = f" in {tool.duration_ms} ms" if tool.duration_ms is not None else ""
        yield heading + f"- `{_line(tool.tool_name)}` ({tool.tool_type}): {tool.status}{duration}\n"
        heading = ""


@dataclass(frozen=True)
class Exporter:
    media_type: str
    extension: str
    chunks: Callable[[AsyncSession, SessionOut], AsyncIterator[str]]


EXPORTERS = {
    "json": Exporter("application/json", "json", json_chunks),
    "markdown": Exporter("text/markdown; charset=utf-8", "md", markdown_chunks),
}


def filename(head: SessionOut, extension: str) -> str:
    """`session-<title slug>-<id>.<ext>`: ASCII letters, digits and dashes only."""
    slug = re.sub(r"[^a-z0-9]+", "-", head.title.lower()).strip("-")[:40].strip("-")
    return f"session-{slug + '-' if slug else ''}{head.id}.{extension}"
