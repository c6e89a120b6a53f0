"""Search on SQLite: FTS5 tables `messages_fts` and `sessions_fts` (migration 0003) and
`ideas_fts` (migration 0005).

Each is an external-content index keyed by the rowid of `messages` / `sessions` / `ideas`; the
statements here join it back to its table by rowid, keep the caller's rows (of sessions not
deleted), and order by `bm25()` (lower is better, so the score is its negation).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    column,
    func,
    literal_column,
    select,
    table,
    text,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from agenthub.db.models.ideas import Idea
from agenthub.db.models.sessions import ChatSession, Message
from agenthub.search.highlight import Markers

SNIPPET_TOKENS = 16
ELLIPSIS = "…"
FTS_TABLES = ("messages_fts", "sessions_fts", "ideas_fts")
# snippet() column -1: the column with the best match (idea text or title).
BEST_COLUMN = -1

_messages_fts = table("messages_fts", column("rowid", Integer))
_sessions_fts = table("sessions_fts", column("rowid", Integer))
_ideas_fts = table("ideas_fts", column("rowid", Integer))


def match_expression(q: str) -> str | None:
    """The FTS5 query that finds every word of `q` literally, or None if `q` has no words.

    Each whitespace-separated piece becomes a quoted string (`"` doubled inside), so FTS5
    syntax in the input (`AND`, `OR`, `NOT`, `NEAR(`, `*`, `^`, `:`, `"`, parentheses) is
    searched as text and can never be a syntax error; the strings are ANDed. A piece with
    no letter or digit holds no token for the `unicode61` tokenizer and is dropped.
    """
    phrases = [
        '"' + piece.replace('"', '""') + '"'
        for piece in q.split()
        if any(ch.isalnum() for ch in piece)
    ]
    return " ".join(phrases) or None


def _fts(name: str) -> ColumnElement[Any]:
    """The FTS table as the left operand of MATCH and the argument of bm25()/snippet()."""
    return literal_column(name)


def messages_query(
    user_id: str,
    match: str,
    /,
    *,
    session_id: str | None,
    markers: Markers,
    limit: int,
    offset: int,
) -> Select[*tuple[Any, ...]]:
    fts = _fts("messages_fts")
    stmt = (
        select(
            Message.id,
            Message.session_id,
            ChatSession.title,
            Message.role,
            Message.created_at,
            func.snippet(fts, 0, markers.open, markers.close, ELLIPSIS, SNIPPET_TOKENS).label(
                "snippet"
            ),
            (-func.bm25(fts)).label("score"),
        )
        .select_from(_messages_fts)
        .join(Message, literal_column("messages.rowid") == _messages_fts.c.rowid)
        .join(ChatSession, ChatSession.id == Message.session_id)
        .where(
            fts.op("MATCH")(match),
            Message.user_id == user_id,
            ChatSession.deleted_at.is_(None),
        )
    )
    if session_id is not None:
        stmt = stmt.where(Message.session_id == session_id)
    return stmt.order_by(func.bm25(fts), Message.id).limit(limit).offset(offset)


def sessions_query(
    user_id: str,
    match: str,
    /,
    *,
    session_id: str | None,
    markers: Markers,
    limit: int,
    offset: int,
) -> Select[*tuple[Any, ...]]:
    fts = _fts("sessions_fts")
    stmt = (
        select(
            ChatSession.id,
            ChatSession.id.label("session_id"),
            ChatSession.title,
            ChatSession.created_at,
            func.snippet(fts, 0, markers.open, markers.close, ELLIPSIS, SNIPPET_TOKENS).label(
                "snippet"
            ),
            (-func.bm25(fts)).label("score"),
        )
        .select_from(_sessions_fts)
        .join(ChatSession, literal_column("sessions.rowid") == _sessions_fts.c.rowid)
        .where(
            fts.op("MATCH")(match),
            ChatSession.user_id == user_id,
            ChatSession.deleted_at.is_(None),
        )
    )
    if session_id is not None:
        stmt = stmt.where(ChatSession.id == session_id)
    return stmt.order_by(func.bm25(fts), ChatSession.id).limit(limit).offset(offset)


def ideas_query(
    user_id: str, match: str, /, *, markers: Markers, limit: int, offset: int
) -> Select[*tuple[Any, ...]]:
    fts = _fts("ideas_fts")
    return (
        select(
            Idea.id,
            Idea.title,
            Idea.created_at,
            func.snippet(
                fts, BEST_COLUMN, markers.open, markers.close, ELLIPSIS, SNIPPET_TOKENS
            ).label("snippet"),
            (-func.bm25(fts)).label("score"),
        )
        .select_from(_ideas_fts)
        .join(Idea, literal_column("ideas.rowid") == _ideas_fts.c.rowid)
        .where(fts.op("MATCH")(match), Idea.user_id == user_id)
        .order_by(func.bm25(fts), Idea.id)
        .limit(limit)
        .offset(offset)
    )


def ideas_matching(match: str) -> ColumnElement[bool]:
    """Ideas whose text or title matches: a filter for lists in their own order."""
    found = select(_ideas_fts.c.rowid).where(_fts("ideas_fts").op("MATCH")(match))
    return literal_column("ideas.rowid").in_(found)


async def rebuild_indexes(conn: AsyncConnection) -> None:
    """Re-read every indexed row: after anything that may renumber rowids (see migration 0003)."""
    for fts in FTS_TABLES:
        await conn.execute(text(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')"))  # noqa: S608
