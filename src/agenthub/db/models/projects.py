"""The projects table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from agenthub.core.ids import new_id
from agenthub.core.ownership import Owned
from agenthub.db.base import Base, Timestamped

PROJECT_STATUSES = ("active", "paused", "completed", "archived")


class Project(Owned, Timestamped, Base):
    __tablename__ = "projects"
    __table_args__ = (Index("ix_projects_user_id_id", "user_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("prj"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="active")
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
