"""The registry of job kinds: a name, a typed input model, a handler and its defaults.

Kinds are registered in code with `@job_kind(...)`: the engine's own in `jobs.kinds` and
`jobs.maintenance`, each domain's in its `tasks` module (imported by `agenthub.wiring`), and a
deployment's in the modules it names in `AGENTHUB_JOB_MODULES` (imported by every server and
worker process).
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from agenthub.core.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    from agenthub.jobs.context import JobContext

InputT = TypeVar("InputT", bound=BaseModel)
Handler = Callable[["JobContext", Any], Awaitable[Any]]


@dataclass(frozen=True)
class Kind:
    name: str
    input_model: type[BaseModel]
    handler: Handler
    max_attempts: int
    timeout_s: float | None
    scheduled: bool
    """Enqueued by the scheduler every `AGENTHUB_MAINTENANCE_INTERVAL_SECONDS` (maintenance);
    such kinds are not created through the API."""


KINDS: dict[str, Kind] = {}


def job_kind(
    name: str,
    *,
    input: type[InputT],
    max_attempts: int = 3,
    timeout_s: float | None = None,
    scheduled: bool = False,
) -> Callable[
    [Callable[[JobContext, InputT], Awaitable[Any]]],
    Callable[[JobContext, InputT], Awaitable[Any]],
]:
    """Register the decorated `async def handler(ctx, input) -> result` as kind `name`."""

    def register(
        handler: Callable[[JobContext, InputT], Awaitable[Any]],
    ) -> Callable[[JobContext, InputT], Awaitable[Any]]:
        KINDS[name] = Kind(name, input, handler, max_attempts, timeout_s, scheduled)
        return handler

    return register


def load_kinds(modules: Iterable[str]) -> None:
    """Import the deployment's own modules of kinds (idempotent)."""
    for module in modules:
        importlib.import_module(module)


def get_kind(name: str) -> Kind:
    """The registered kind, or 422 naming the field."""
    kind = KINDS.get(name)
    if kind is None or kind.scheduled:
        raise ValidationFailed(
            f"Unknown job kind {name!r}.",
            errors=[FieldError(field="kind", message=f"one of {', '.join(creatable_kinds())}")],
        )
    return kind


def creatable_kinds() -> list[str]:
    return sorted(k.name for k in KINDS.values() if not k.scheduled)


def parse_input(kind: Kind, data: Any, *, field: str = "input") -> BaseModel:
    """The input validated by the kind's model; 422 with each field's message otherwise."""
    try:
        return kind.input_model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(
            f"Invalid input for {kind.name}.",
            errors=[
                FieldError(
                    field=".".join([field, *(str(p) for p in err["loc"])]), message=err["msg"]
                )
                for err in exc.errors()
            ],
        ) from exc
