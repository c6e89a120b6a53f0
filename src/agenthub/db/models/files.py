"""The files table (metadata; content lives in the storage backend)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from agenthub.core.ids import new_id
from agenthub.core.ownership import Owned
from agenthub.db.base import Base, Timestamped

PURPOSES = ("attachment", "agent_config", "document")


class StoredFile(Owned, Timestamped, Base):
    __tablename__ = "files"
    __table_args__ = (Index("ix_files_user_id_id", "user_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("fil"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(127))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    purpose: Mapped[str] = mapped_column(String(32), default="attachment")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    storage_key: Mapped[str] = mapped_column(String(255))
