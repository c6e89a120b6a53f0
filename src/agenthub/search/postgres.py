"""Search on PostgreSQL: generated `search_vector` columns with GIN indexes (migrations 0003
and 0005).

The query is `plainto_tsquery('simple', q)`: every word must occur, and no input is syntax.
Ranking (`ts_rank` with length normalization 1) and paging run in an inner query; the costly
`ts_headline` runs only on the rows of the page. The indexed text has a space after each `<`
(so the parser does not take `<word>` for an HTML tag and drop it); the headline is made from
the same text and the space taken out again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    SQLColumnExpression,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.dialects.postgresql import TSVECTOR

from agenthub.db.models.ideas import Idea
from agenthub.db.models.sessions import ChatSession, Message
from agenthub.search.highlight import Markers

# The text search configuration of the generated columns: no stemming, no stop words.
CONFIG: ColumnElement[Any] = literal_column("'simple'::regconfig")
# Divide the rank by 1 + log(document length): long messages do not win by length alone.
RANK_NORMALIZATION = 1
HEADLINE_OPTIONS = "MaxWords=24, MinWords=8, ShortWord=2, MaxFragments=2"
FRAGMENT_DELIMITER = " … "
# What `<` becomes in the indexed text (the expression of the generated columns, 0003).
TAG_BREAK = "< "


def _vector(table: str) -> ColumnElement[Any]:
    return literal_column(f"{table}.search_vector", TSVECTOR)


def _tsquery(q: str) -> ColumnElement[Any]:
    return func.plainto_tsquery(CONFIG, q)


def _idea_document() -> ColumnElement[str]:
    """The text of an idea's generated column (0005): its title, a space, its text."""
    return func.coalesce(Idea.title, literal("")) + " " + Idea.idea


def _headline(column: SQLColumnExpression[str], q: str, markers: Markers) -> ColumnElement[str]:
    """`ts_headline` over the text as it was indexed, the inserted spaces taken out again."""
    text = func.replace(column, "<", TAG_BREAK)
    headline = func.ts_headline(CONFIG, text, _tsquery(q), _options(markers))
    return func.replace(headline, TAG_BREAK, "<")


def _options(markers: Markers) -> str:
    return (
        f"StartSel={markers.open}, StopSel={markers.close}, {HEADLINE_OPTIONS}, "
        f'FragmentDelimiter="{FRAGMENT_DELIMITER}"'
    )


def messages_query(
    user_id: str,
    q: str,
    /,
    *,
    session_id: str | None,
    markers: Markers,
    limit: int,
    offset: int,
) -> Select[*tuple[Any, ...]]:
    vector = _vector("messages")
    score = func.ts_rank(vector, _tsquery(q), RANK_NORMALIZATION)
    page = (
        select(Message.id.label("id"), score.label("score"))
        .join(ChatSession, ChatSession.id == Message.session_id)
        .where(
            vector.bool_op("@@")(_tsquery(q)),
            Message.user_id == user_id,
            ChatSession.deleted_at.is_(None),
        )
    )
    if session_id is not None:
        page = page.where(Message.session_id == session_id)
    hits = page.order_by(score.desc(), Message.id).limit(limit).offset(offset).subquery("hits")
    return (
        select(
            Message.id,
            Message.session_id,
            ChatSession.title,
            Message.role,
            Message.created_at,
            _headline(Message.content, q, markers).label("snippet"),
            hits.c.score,
        )
        .select_from(hits)
        .join(Message, Message.id == hits.c.id)
        .join(ChatSession, ChatSession.id == Message.session_id)
        .order_by(hits.c.score.desc(), Message.id)
    )


def sessions_query(
    user_id: str,
    q: str,
    /,
    *,
    session_id: str | None,
    markers: Markers,
    limit: int,
    offset: int,
) -> Select[*tuple[Any, ...]]:
    vector = _vector("sessions")
    score = func.ts_rank(vector, _tsquery(q), RANK_NORMALIZATION)
    page = select(ChatSession.id.label("id"), score.label("score")).where(
        vector.bool_op("@@")(_tsquery(q)),
        ChatSession.user_id == user_id,
        ChatSession.deleted_at.is_(None),
    )
    if session_id is not None:
        page = page.where(ChatSession.id == session_id)
    hits = page.order_by(score.desc(), ChatSession.id).limit(limit).offset(offset).subquery("hits")
    return (
        select(
            ChatSession.id,
            ChatSession.id.label("session_id"),
            ChatSession.title,
            ChatSession.created_at,
            _headline(ChatSession.title, q, markers).label("snippet"),
            hits.c.score,
        )
        .select_from(hits)
        .join(ChatSession, ChatSession.id == hits.c.id)
        .order_by(hits.c.score.desc(), ChatSession.id)
    )


def ideas_query(
    user_id: str, q: str, /, *, markers: Markers, limit: int, offset: int
) -> Select[*tuple[Any, ...]]:
    vector = _vector("ideas")
    score = func.ts_rank(vector, _tsquery(q), RANK_NORMALIZATION)
    hits = (
        select(Idea.id.label("id"), score.label("score"))
        .where(vector.bool_op("@@")(_tsquery(q)), Idea.user_id == user_id)
        .order_by(score.desc(), Idea.id)
        .limit(limit)
        .offset(offset)
        .subquery("hits")
    )
    return (
        select(
            Idea.id,
            Idea.title,
            Idea.created_at,
            _headline(_idea_document(), q, markers).label("snippet"),
            hits.c.score,
        )
        .select_from(hits)
        .join(Idea, Idea.id == hits.c.id)
        .order_by(hits.c.score.desc(), Idea.id)
    )


def ideas_matching(q: str) -> ColumnElement[bool]:
    """Ideas whose text or title matches: a filter for lists in their own order."""
    return _vector("ideas").bool_op("@@")(_tsquery(q))
