"""The agents table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agenthub.core.ids import new_id
from agenthub.core.ownership import Owned
from agenthub.db.base import Base, Timestamped

AGENT_STATUSES = ("idle", "running", "stopped", "error")


class Agent(Owned, Timestamped, Base):
    __tablename__ = "agents"
    __table_args__ = (
        Index("ix_agents_user_id_id", "user_id", "id"),
        Index("ix_agents_user_id_type", "user_id", "type"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("agt"))
    project_id: Mapped[str | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(64))
    runner: Mapped[str] = mapped_column(String(16), default="echo")
    model: Mapped[str | None] = mapped_column(String(200))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tools: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="idle")
