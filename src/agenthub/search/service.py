"""Full-text search over a user's messages, session titles and ideas.

The only dialect switch of search: the statements live in `search.sqlite` (FTS5) and
`search.postgres` (tsvector). Results are ranked, so paging is by offset: `next_cursor` is an
opaque token for the offset of the next page (pass it back as `after`); it is not tied to the
query, and results that change between requests may shift pages.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, false
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.core.errors import FieldError, ValidationFailed
from agenthub.search import postgres, sqlite
from agenthub.search.highlight import Markers
from agenthub.search.schemas import HitType, SearchType

# Deeper pages are not served (`has_more` turns false there): nobody reads that far in a
# ranked list, and each page ranks every match again.
MAX_OFFSET = 100_000
_CURSOR_PREFIX = "search:"
HIT_TYPES: dict[SearchType, HitType] = {
    "messages": "message",
    "sessions": "session",
    "ideas": "idea",
}


@dataclass(frozen=True)
class Hit:
    type: HitType
    id: str
    session_id: str | None
    title: str | None
    role: str | None
    snippet: str
    rank: float
    created_at: datetime


@dataclass(frozen=True)
class SearchPage:
    hits: list[Hit]
    has_more: bool
    next_cursor: str | None


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"{_CURSOR_PREFIX}{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The offset a `next_cursor` stands for; 422 for anything else."""
    if cursor is None:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    value = raw.removeprefix(_CURSOR_PREFIX)
    if raw.startswith(_CURSOR_PREFIX) and value.isdigit() and int(value) <= MAX_OFFSET:
        return int(value)
    raise ValidationFailed(
        "`after` is not a cursor of this search.",
        errors=[FieldError(field="after", message="expected the next_cursor of a search page")],
    )


def statement(
    dialect: str,
    kind: SearchType,
    user_id: str,
    q: str,
    *,
    session_id: str | None,
    markers: Markers,
    limit: int,
    offset: int,
) -> Select[*tuple[Any, ...]] | None:
    """The search statement for this dialect, or None when `q` cannot match anything.
    `session_id` narrows messages and sessions; ideas belong to no session."""
    if dialect == "sqlite":
        match = sqlite.match_expression(q)
        if match is None:
            return None
        if kind == "ideas":
            return sqlite.ideas_query(user_id, match, markers=markers, limit=limit, offset=offset)
        build = sqlite.messages_query if kind == "messages" else sqlite.sessions_query
        return build(
            user_id, match, session_id=session_id, markers=markers, limit=limit, offset=offset
        )
    if kind == "ideas":
        return postgres.ideas_query(user_id, q, markers=markers, limit=limit, offset=offset)
    build = postgres.messages_query if kind == "messages" else postgres.sessions_query
    return build(user_id, q, session_id=session_id, markers=markers, limit=limit, offset=offset)


def ideas_matching(dialect: str, q: str) -> ColumnElement[bool]:
    """A filter on `ideas` rows whose text or title holds every word of `q` (the same
    matching as `search`), for lists that keep their own order."""
    if dialect == "sqlite":
        match = sqlite.match_expression(q)
        return false() if match is None else sqlite.ideas_matching(match)
    return postgres.ideas_matching(q)


async def search(
    db: AsyncSession,
    user_id: str,
    q: str,
    *,
    kind: SearchType = "messages",
    session_id: str | None = None,
    limit: int = 20,
    offset: int = 0,
) -> SearchPage:
    """The user's matches for `q`, best first: messages of sessions not deleted, the titles
    of such sessions, or ideas (text and title). Every word of `q` must occur; `q` is text,
    never query syntax."""
    markers = Markers()
    stmt = statement(
        db.get_bind().dialect.name,
        kind,
        user_id,
        q,
        session_id=session_id,
        markers=markers,
        limit=limit + 1,
        offset=offset,
    )
    rows = [] if stmt is None else list((await db.execute(stmt)).mappings())
    has_more = len(rows) > limit and offset + limit <= MAX_OFFSET
    hits = [_hit(kind, row, markers) for row in rows[:limit]]
    return SearchPage(
        hits=hits,
        has_more=has_more,
        next_cursor=encode_cursor(offset + limit) if has_more else None,
    )


def _hit(kind: SearchType, row: Any, markers: Markers) -> Hit:
    return Hit(
        type=HIT_TYPES[kind],
        id=row["id"],
        session_id=row.get("session_id"),
        title=row["title"],
        role=row.get("role"),
        snippet=markers.render(row["snippet"]),
        rank=float(row["score"]),
        created_at=row["created_at"],
    )
