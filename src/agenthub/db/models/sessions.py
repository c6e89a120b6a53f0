"""Sessions, messages and tool executions.

Messages are paged by `(session_id, id)`: ids sort by time, so the composite index serves
keyset pages at any depth. `message_count` and `last_activity_at` on the session are kept
exact in the transaction that adds or removes a message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from agenthub.core.ids import new_id
from agenthub.core.ownership import Owned
from agenthub.db.base import Base, Timestamped, utcnow

ROLES = ("user", "assistant", "system", "tool")
TOOL_STATUSES = ("pending", "running", "succeeded", "failed")
TOOL_FINAL_STATUSES = ("succeeded", "failed")


class ChatSession(Owned, Timestamped, Base):
    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_id_last_activity_at", "user_id", "last_activity_at"),
        Index("ix_sessions_user_id_agent_type", "user_id", "agent_type"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ses"))
    agent_id: Mapped[str | None] = mapped_column(
        ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    agent_type: Mapped[str] = mapped_column(String(64))
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), index=True
    )
    title: Mapped[str] = mapped_column(String(200), default="New chat")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    message_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]

    @property
    def status(self) -> str:
        return session_status(self.deleted_at, self.archived_at)


def session_status(deleted_at: datetime | None, archived_at: datetime | None) -> str:
    """`deleted` (in the trash), `archived` (over the limit, restorable) or `active`."""
    if deleted_at is not None:
        return "deleted"
    return "archived" if archived_at is not None else "active"


class Message(Owned, Base):
    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_session_id_id", "session_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("msg"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    prompt_tokens: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    completion_tokens: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    tool_calls: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    """An assistant turn's tool calls: `[{id, name, arguments}]`."""
    tool_call_id: Mapped[str | None] = mapped_column(String(64))
    """The call a `tool` turn answers."""


class ToolExecution(Owned, Timestamped, Base):
    __tablename__ = "tool_executions"
    __table_args__ = (Index("ix_tool_executions_session_id_id", "session_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("tex"))
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    message_id: Mapped[str | None] = mapped_column(
        ForeignKey("messages.id", ondelete="SET NULL"), index=True
    )
    tool_name: Mapped[str] = mapped_column(String(200))
    tool_type: Mapped[str] = mapped_column(String(32))
    input: Mapped[Any] = mapped_column(JSON, default=dict)
    output: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None]
