"""`realtime_gaps`: channels whose events were lost on their way to the broker, kept until the
channel's log has been restarted (see `realtime.relay`), so that a process that dies during a
broker outage leaves its gaps to the next relay that starts instead of taking them along.

Each relay records its own marks (`relay` is its id): a live relay restarts the channels it
marked itself, and a relay that starts applies every mark it finds."""

from __future__ import annotations

from collections.abc import Collection
from typing import NamedTuple

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.db.base import utcnow
from agenthub.db.models.realtime import RealtimeGap


class Mark(NamedTuple):
    channel: str
    relay: str
    marks: int


async def mark(db: AsyncSession, relay: str, channels: Collection[str]) -> int:
    """Record a gap on each channel, or count one more on a gap already recorded; returns how
    many channels were marked."""
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    rows = [
        {"channel": c, "relay": relay, "marks": 1, "created_at": utcnow()} for c in sorted(channels)
    ]
    statement = insert(RealtimeGap).values(rows)
    await db.execute(
        statement.on_conflict_do_update(
            index_elements=[RealtimeGap.channel, RealtimeGap.relay],
            set_={"marks": RealtimeGap.marks + 1},
        )
    )
    return len(rows)


async def marked(db: AsyncSession, relay: str | None = None) -> list[Mark]:
    """The recorded gaps: one relay's, or (None) every relay's."""
    query = select(RealtimeGap.channel, RealtimeGap.relay, RealtimeGap.marks)
    if relay is not None:
        query = query.where(RealtimeGap.relay == relay)
    return [Mark(*row) for row in await db.execute(query)]


async def clear(db: AsyncSession, marks: Collection[Mark]) -> None:
    """Delete these gaps (as `marked` read them) unless marked again since."""
    for channel, relay, count in marks:
        await db.execute(
            delete(RealtimeGap).where(
                RealtimeGap.channel == channel,
                RealtimeGap.relay == relay,
                RealtimeGap.marks == count,
            )
        )
