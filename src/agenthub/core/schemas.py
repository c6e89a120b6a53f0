"""Building blocks of request bodies shared by the domains."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, Field

T = TypeVar("T")


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("may be omitted but not null")
    return value


def _without_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


if TYPE_CHECKING:
    Omittable = Annotated[T | None, ...]
else:
    # At run time the schema is `T` alone (no `null`), and an explicit null is refused;
    # the `None` default only marks the field as not sent (read `model_fields_set`).
    Omittable = Annotated[T, BeforeValidator(_not_null), Field(json_schema_extra=_without_default)]
"""A PATCH field that may be left out but, when sent, may not be null.

Declare it `name: Omittable[str] = Field(default=None, max_length=200)` and apply
`model_dump(exclude_unset=True)`: only the fields the client sent change.
"""


def apply_changes(row: object, changes: Mapping[str, Any]) -> bool:
    """Set the attributes a PATCH sent on `row`; True when any value actually changed."""
    changed = False
    for name, value in changes.items():
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed = True
    return changed


def _distinct(values: list[T]) -> list[T]:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat an item")
    return values


Distinct = AfterValidator(_distinct)
"""Refuse a list with repeated items: `ids: Annotated[list[str], Distinct]`."""
