"""The list envelope of SPEC §2 and keyset pagination over time-sortable ids."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Generic, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select
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
) -> tuple[Sequence[Row], bool, str | None]:
    """One page of `stmt` in `params.order` by id, the `has_more` flag and the next cursor.

    `after` continues in list order from a cursor; `before` pages backwards towards the start
    and still returns its rows in list order. Backed by the (owner, id) index, it reads only
    `limit + 1` index entries at any depth.
    """
    check_cursor(params, prefix)
    ascending = params.order == "asc"
    backwards = params.before is not None
    if params.after is not None:
        stmt = stmt.where(id_column > params.after if ascending else id_column < params.after)
    if params.before is not None:
        stmt = stmt.where(id_column < params.before if ascending else id_column > params.before)
    scan_ascending = ascending != backwards
    stmt = stmt.order_by(id_column.asc() if scan_ascending else id_column.desc())
    rows = list((await db.scalars(stmt.limit(params.limit + 1))).all())
    has_more = len(rows) > params.limit
    rows = rows[: params.limit]
    if backwards:
        rows.reverse()
    next_cursor = None
    if has_more and rows:
        next_cursor = getattr(rows[0] if backwards else rows[-1], "id", None)
    return rows, has_more, next_cursor
