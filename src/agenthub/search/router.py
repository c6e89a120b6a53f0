"""`/v1/search` routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from agenthub.core.errors import FieldError, ValidationFailed, problem_responses
from agenthub.core.pagination import Page
from agenthub.db.session import DbSession
from agenthub.search import service
from agenthub.search.schemas import SearchHit, SearchType
from agenthub.web.caller import CurrentUser

router = APIRouter(prefix="/v1/search", tags=["search"], responses=problem_responses(401))

MAX_QUERY = 500
MAX_LIMIT = 50
DEFAULT_LIMIT = 20


def _check_query(q: str) -> str:
    if not q.strip():
        raise ValidationFailed(
            "`q` must contain something to search for.",
            errors=[FieldError(field="q", message="must not be empty or only whitespace")],
        )
    if "\x00" in q:
        raise ValidationFailed(
            "`q` must not contain NUL characters.",
            errors=[FieldError(field="q", message="must not contain NUL (\\u0000) characters")],
        )
    return q.strip()


@router.get("", response_model=Page[SearchHit], responses=problem_responses(422))
async def search(
    user: CurrentUser,
    db: DbSession,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=MAX_QUERY,
            description="Words to find; every word must occur. Taken literally: quotes, "
            "operators and wildcards are searched as text.",
        ),
    ],
    search_type: Annotated[
        SearchType,
        Query(
            alias="type",
            description="`messages` (default), `sessions` (titles) or `ideas` (idea text "
            "and spec title).",
        ),
    ] = "messages",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    session_id: Annotated[
        str | None,
        Query(max_length=64, description="Only within this session (not with `type=ideas`)"),
    ] = None,
    after: Annotated[
        str | None,
        Query(max_length=64, description="Cursor: the `next_cursor` of the previous page"),
    ] = None,
) -> Page[SearchHit]:
    """Full-text search over your own messages, session titles or ideas, best match first.

    Sessions in the trash (soft-deleted) and their messages are left out; archived ones are
    found.
    Each hit's `snippet` is HTML-safe: escaped text with the matched words in
    `<mark>…</mark>`. Results are ranked, so `next_cursor` is an opaque offset into this
    ranking (pass it as `after` with the same query). Matching is case-insensitive; on SQLite
    it also ignores diacritics.
    """
    if search_type == "ideas" and session_id is not None:
        raise ValidationFailed(
            "Ideas belong to no session.",
            errors=[FieldError(field="session_id", message="not allowed with type=ideas")],
        )
    page = await service.search(
        db,
        user.id,
        _check_query(q),
        kind=search_type,
        session_id=session_id,
        limit=limit,
        offset=service.decode_cursor(after),
    )
    return Page(
        data=[SearchHit.model_validate(hit) for hit in page.hits],
        has_more=page.has_more,
        next_cursor=page.next_cursor,
    )
