"""The list envelope (docs/api.md) and keyset pagination over time-sortable ids."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Generic, Literal, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, literal, or_, tuple_
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


Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
After = Annotated[str | None, Query(max_length=64, description="Cursor: items after this id")]
Before = Annotated[str | None, Query(max_length=64, description="Cursor: items before this id")]


def paging(
    default_order: Literal["asc", "desc"] = "desc",
) -> Callable[..., Awaitable[PageParams]]:
    """A dependency parsing `limit`, `after`, `before` and `order` (default `default_order`)."""

    async def params(
        limit: Limit = DEFAULT_LIMIT,
        after: After = None,
        before: Before = None,
        order: Annotated[Literal["asc", "desc"], Query()] = default_order,
    ) -> PageParams:
        if after is not None and before is not None:
            raise ValidationFailed(
                "Use either `after` or `before`, not both.",
                errors=[FieldError(field="after", message="cannot be combined with before")],
            )
        return PageParams(limit=limit, after=after, before=before, order=order)

    return params


# Newest first: the default of most lists.
page_params = paging("desc")


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
    *,
    offset: int | None = None,
) -> tuple[Sequence[Row], bool, str | None]:
    """One page of `stmt` in `params.order`, the `has_more` flag and the next cursor.

    Rows are ordered by id, or by `sort_column` with the id breaking ties; the cursor is
    always an id (for a sort column, its row's value is looked up within `stmt`, so a cursor
    from outside the list is refused). `after` continues in list order from a cursor;
    `before` pages backwards towards the start and still returns its rows in list order.
    Backed by an index on (owner, sort column[, id]), it reads `limit + 1` index entries at
    any depth. `offset` skips that many rows from the start instead (no cursor allowed with
    it); it reads every skipped entry, so it is for shallow jumps, not deep paging.
    """
    check_cursor(params, prefix)
    if offset is not None and (params.after is not None or params.before is not None):
        raise ValidationFailed(
            "Use either `offset` or a cursor (`after`/`before`), not both.",
            errors=[FieldError(field="offset", message="cannot be combined with a cursor")],
        )
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
    if offset:
        stmt = stmt.offset(offset)
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


# Sorted lists: `?sort=name` / `?sort=-updated_at` instead of `?order=`.

NameTimeSort = Literal["created_at", "-created_at", "updated_at", "-updated_at", "name", "-name"]
"""The sort keys of named, timestamped resources (projects, agents); `-` sorts descending."""

SORT_DESCRIPTION = "Sort key; a leading `-` sorts descending. Ties are broken by id."


async def cursor_params(
    limit: Limit = DEFAULT_LIMIT, after: After = None, before: Before = None
) -> PageParams:
    """`limit`, `after`, `before` for lists whose order comes from a `sort` parameter."""
    return await page_params(limit, after, before, "desc")


CursorPaging = Annotated[PageParams, Depends(cursor_params)]
SortQuery = Annotated[NameTimeSort, Query(description=SORT_DESCRIPTION)]


async def sorted_keyset_page(
    db: AsyncSession,
    stmt: Select[Row],
    model: type[Any],
    params: PageParams,
    prefix: str,
    sort: str,
) -> tuple[Sequence[Row], bool, str | None]:
    """`keyset_page` ordered by a sort key such as `name` or `-updated_at`.

    The key names a column of `model`; `created_at` orders by the id, which is time-sortable
    and covered by the `(owner, id)` index, so the default newest-first list stays index-only.
    """
    field = sort.removeprefix("-")
    order: Literal["asc", "desc"] = "desc" if sort.startswith("-") else "asc"
    id_column: InstrumentedAttribute[str] = model.id
    sort_column = None if field in ("created_at", "id") else getattr(model, field)
    return await keyset_page(
        db, stmt, id_column, replace(params, order=order), prefix, sort_column=sort_column
    )


def contains_text(q: str, *columns: InstrumentedAttribute[Any]) -> ColumnElement[bool]:
    """Case-insensitive substring match of `q` on any of `columns` (`%` and `_` match literally)."""
    return or_(*(column.icontains(q, autoescape=True) for column in columns))
