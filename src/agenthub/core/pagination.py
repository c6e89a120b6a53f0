"""The list envelope of SPEC §2 and keyset pagination over time-sortable ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, literal, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from agenthub.core.errors import FieldError, ValidationFailed
from agenthub.core.ids import is_valid

T = TypeVar("T")
Row = TypeVar("Row")

MAX_LIMIT = 200
DEFAULT_LIMIT = 50


class Page(BaseModel, Generic[T]):
    data: list[T]
    has_more: bool
    next_cursor: str | None


@dataclass(frozen=True)
class PageParams:
    limit: int
    after: str | None
    before: str | None
    order: Literal["asc", "desc"]


async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    after: Annotated[
        str | None, Query(max_length=64, description="Cursor: items after this id")
    ] = None,
    before: Annotated[
        str | None, Query(max_length=64, description="Cursor: items before this id")
    ] = None,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> PageParams:
    if after is not None and before is not None:
        raise ValidationFailed(
            "Use either `after` or `before`, not both.",
            errors=[FieldError(field="after", message="cannot be combined with before")],
        )
    return PageParams(limit=limit, after=after, before=before, order=order)


def check_cursor(params: PageParams, prefix: str) -> None:
    """422 unless the cursors are ids of this resource type."""
    for name in ("after", "before"):
        value = getattr(params, name)
        if value is not None and not is_valid(value, prefix):
            raise ValidationFailed(
                f"`{name}` is not a valid cursor.",
                errors=[FieldError(field=name, message=f"expected an id starting {prefix}_")],
            )


async def keyset_page(
    db: AsyncSession,
    stmt: Select[Row],
    id_column: InstrumentedAttribute[str],
    params: PageParams,
    prefix: str,
    sort_column: InstrumentedAttribute[Any] | None = None,
) -> tuple[Sequence[Row], bool, str | None]:
    """One page of `stmt` in `params.order`, the `has_more` flag and the next cursor.

    Rows are ordered by id, or by `sort_column` with the id breaking ties; the cursor is
    always an id (for a sort column, its row's value is looked up within `stmt`, so a cursor
    from outside the list is refused). `after` continues in list order from a cursor;
    `before` pages backwards towards the start and still returns its rows in list order.
    Backed by an index on (owner, sort column[, id]), it reads `limit + 1` index entries at
    any depth.
    """
    check_cursor(params, prefix)
    ascending = params.order == "asc"
    cursor = params.after or params.before
    backwards = params.before is not None
    if cursor is not None:
        forward_is_greater = ascending != backwards
        if sort_column is None:
            stmt = stmt.where(id_column > cursor if forward_is_greater else id_column < cursor)
        else:
            value = await _cursor_value(db, stmt, id_column, sort_column, cursor)
            key = tuple_(sort_column, id_column)
            at = tuple_(literal(value, sort_column.type), literal(cursor, id_column.type))
            stmt = stmt.where(key > at if forward_is_greater else key < at)
    scan_ascending = ascending != backwards
    order = [sort_column] if sort_column is not None else []
    stmt = stmt.order_by(*(c.asc() if scan_ascending else c.desc() for c in [*order, id_column]))
    rows = list((await db.scalars(stmt.limit(params.limit + 1))).all())
    has_more = len(rows) > params.limit
    rows = rows[: params.limit]
    if backwards:
        rows.reverse()
    next_cursor = None
    if has_more and rows:
        next_cursor = getattr(rows[0] if backwards else rows[-1], "id", None)
    return rows, has_more, next_cursor


async def _cursor_value(
    db: AsyncSession,
    stmt: Select[Row],
    id_column: InstrumentedAttribute[str],
    sort_column: InstrumentedAttribute[Any],
    cursor: str,
) -> Any:
    found = (
        await db.execute(stmt.with_only_columns(sort_column).where(id_column == cursor))
    ).first()
    if found is None:
        raise ValidationFailed(
            "The cursor does not point into this list.",
            errors=[FieldError(field="cursor", message="unknown cursor")],
        )
    return found[0]
