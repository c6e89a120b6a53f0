"""The ideas table: an idea's text, its generation options and the specification once ready."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agenthub.core.ids import new_id
from agenthub.core.ownership import Owned
from agenthub.db.base import Base, Timestamped


class Idea(Owned, Timestamped, Base):
    __tablename__ = "ideas"
    __table_args__ = (Index("ix_ideas_user_id_id", "user_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ide"))
    idea: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    title: Mapped[str | None] = mapped_column(String(200))
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    completed_at: Mapped[datetime | None]
