"""`realtime_gaps`: channels whose events were lost on their way to the broker, kept until the
channel's log has been restarted (see `realtime.relay`), so that a process that dies during a
broker outage leaves its gaps to the next relay instead of taking them along."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime

from sqlalchemy import String, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from agenthub.db.base import Base, utcnow


class RealtimeGap(Base):
    __tablename__ = "realtime_gaps"

    channel: Mapped[str] = mapped_column(String(140), primary_key=True)
    marks: Mapped[int]
    """How often the channel was marked; a row changed since it was read is not cleared."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


async def mark(db: AsyncSession, channels: Collection[str]) -> int:
    """Record a gap on each channel, or count one more on a gap already recorded; returns how
    many channels were marked."""
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    rows = [{"channel": c, "marks": 1, "created_at": utcnow()} for c in sorted(channels)]
    statement = insert(RealtimeGap).values(rows)
    await db.execute(
        statement.on_conflict_do_update(
            index_elements=[RealtimeGap.channel], set_={"marks": RealtimeGap.marks + 1}
        )
    )
    return len(rows)


async def marked(db: AsyncSession) -> dict[str, int]:
    """Every recorded gap: its channel and how often it was marked."""
    rows = await db.execute(select(RealtimeGap.channel, RealtimeGap.marks))
    return {channel: marks for channel, marks in rows}


async def clear(db: AsyncSession, gaps: Mapping[str, int]) -> None:
    """Delete the rows of these gaps (as `marked` read them) unless marked again since."""
    for channel, marks in gaps.items():
        await db.execute(
            delete(RealtimeGap).where(RealtimeGap.channel == channel, RealtimeGap.marks == marks)
        )
