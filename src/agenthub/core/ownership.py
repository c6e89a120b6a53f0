"""Per-user isolation: every owned row is read through these, so no route forgets the check."""

from __future__ import annotations

from typing import Any, TypeVar, cast

from sqlalchemy import ForeignKey, Select, String, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from agenthub.core.errors import FieldError, NotFound, ValidationFailed


class Owned:
    """Mixin for tables whose rows belong to one user.

    `user_id` is not indexed alone: each table declares the composite index its queries
    need, led by `user_id` (e.g. `(user_id, id)` for keyset lists).
    """

    id: Mapped[str]

    @declared_attr
    def user_id(cls) -> Mapped[str]:
        return mapped_column(String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False)


OwnedT = TypeVar("OwnedT", bound=Owned)


def owned_by(model: type[OwnedT], user_id: str) -> Select[OwnedT]:
    """`SELECT model WHERE user_id = :user_id`, the start of every list query."""
    return select(model).where(model.user_id == user_id)


_OWNED_ROWS: dict[type[Owned], Select[Any]] = {}


def _owned_row(model: type[OwnedT]) -> Select[OwnedT]:
    """`SELECT model WHERE user_id = :user_id AND id = :id`, built once per model: most
    requests run one, and building a statement costs more than running it."""
    if model not in _OWNED_ROWS:
        _OWNED_ROWS[model] = select(model).where(
            model.user_id == bindparam("user_id"), model.id == bindparam("id")
        )
    return cast(Select[OwnedT], _OWNED_ROWS[model])


async def get_owned(
    db: AsyncSession, model: type[OwnedT], item_id: str, user_id: str, *, what: str | None = None
) -> OwnedT:
    """The row with this id if it belongs to the user; 404 otherwise (never 403, never a hint)."""
    row = await db.scalar(_owned_row(model), {"user_id": user_id, "id": item_id})
    if row is None:
        raise NotFound(f"{what or model.__name__} {item_id!r} not found.")
    return row


async def check_owned_reference(
    db: AsyncSession, model: type[OwnedT], item_id: str | None, user_id: str, *, field: str
) -> None:
    """422 when a request body refers (`field`) to a row the user does not own or that is absent.

    The message is the same for both cases, so a foreign id reveals nothing.
    """
    if item_id is None:
        return
    found = await db.scalar(select(model.id).where(model.user_id == user_id, model.id == item_id))
    if found is None:
        raise ValidationFailed(
            f"{field} does not refer to one of your resources.",
            errors=[FieldError(field=field, message="not found")],
        )
