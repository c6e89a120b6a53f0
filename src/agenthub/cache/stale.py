"""Which users a unit of work wrote for: recorded on the unit (an `after_flush` hook for ORM
rows, `invalidate_cache_of` for bulk statements) and taken by `Database` after the commit, to
invalidate their cached reads (`agenthub.cache`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from agenthub.core.events import Recorder

ALL_USERS = "*"
"""The scope of reads over every user's data; any user's write makes it stale."""
EVERYONE = "**"
"""Recorded by `invalidate_every_cache`: a write whose owners are unknown makes every scope
stale."""
IGNORED_TABLES = frozenset({"api_keys", "logins", "refresh_tokens", "audit_events"})
"""Credentials and the audit log: sign-ins write them, no cached read counts them."""
_STALE_OWNERS = "agenthub.cache.stale_owners"


def invalidate_cache_of(db: Recorder, *user_ids: str | None) -> None:
    """Have these users' cached reads invalidated once this unit of work commits: it changed
    their data (bulk statements call it; ORM rows are recorded by themselves)."""
    db.info.setdefault(_STALE_OWNERS, set()).update(u for u in user_ids if u)


def invalidate_every_cache(db: AsyncSession) -> None:
    """Record a write whose owners are unknown (a purge across users): every entry is stale."""
    invalidate_cache_of(db, EVERYONE)


def take_stale_owners(db: Recorder) -> set[str]:
    owners: set[str] = db.info.pop(_STALE_OWNERS, set())
    return owners


@event.listens_for(Session, "after_flush")
def _record_owners(session: Session, _: Any) -> None:
    """The owners of the rows this flush inserted, updated or deleted (loaded state only: an
    expired `user_id` is never loaded here)."""
    owners = {
        state.dict.get("user_id")
        for state in map(inspect, (*session.new, *session.dirty, *session.deleted))
        if state.mapper.local_table.name not in IGNORED_TABLES
    }
    owners.discard(None)
    if owners:
        session.info.setdefault(_STALE_OWNERS, set()).update(owners)
