"""`realtime_gaps`: channels whose events were lost on their way to the broker
(`realtime.gaps`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from agenthub.db.base import Base, utcnow


class RealtimeGap(Base):
    __tablename__ = "realtime_gaps"

    channel: Mapped[str] = mapped_column(String(140), primary_key=True)
    relay: Mapped[str] = mapped_column(String(40), primary_key=True)
    marks: Mapped[int]
    """How often the relay marked the channel; a row changed since it was read stays."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
