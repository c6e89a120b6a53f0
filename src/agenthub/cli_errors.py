"""What the command line says when something goes wrong: a known failure becomes a few lines
on stderr saying what to do, and an exit status; anything else keeps its traceback.

Exit status 2: the configuration or the command line is wrong (fix it and run again);
1: the command could not do its work (the database is unreachable, the user exists).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EXIT_FAILED = 1
EXIT_MISCONFIGURED = 2

# What a setting of each pydantic error type expects, said in the words of an environment
# variable's value.
_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "an integer",
    "float_parsing": "a number",
    "float_type": "a number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
}
_BOUNDS = {
    "greater_than": "a number > {gt}",
    "greater_than_equal": "a number >= {ge}",
    "less_than": "a number < {lt}",
    "less_than_equal": "a number <= {le}",
}
_SECRET_MARKERS = ("secret", "key", "password", "_url")


class CommandError(Exception):
    """A command refused or failed for a reason its message says; `hint` says what to do."""

    def __init__(self, message: str, *, hint: str | None = None, code: int = EXIT_MISCONFIGURED):
        super().__init__(message)
        self.hint = hint
        self.code = code


@contextmanager
def reported() -> Iterator[None]:
    """Run a command; a failure `explain` knows ends it with its lines and exit status."""
    try:
        yield
    except Exception as exc:
        explained = explain(exc)
        if explained is None:
            raise
        lines, code = explained
        for line in lines:
            print(line, file=sys.stderr)
        raise SystemExit(code) from None


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def explain(exc: Exception) -> tuple[list[str], int] | None:
    """The lines (errors, then what to do) and the exit status for a failure the command line
    knows, or None."""
    from pydantic import ValidationError

    from agenthub.core.errors import AgentHubError
    from agenthub.db.diagnosis import DatabaseUnusable

    if isinstance(exc, CommandError):
        hint = [f"  {exc.hint}"] if exc.hint else []
        return [f"error: {exc}", *hint], exc.code
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return [f"error: {_setting_error(error)}" for error in exc.errors()], EXIT_MISCONFIGURED
    if isinstance(exc, DatabaseUnusable):
        return [f"error: {exc.problem.what}", f"  {exc.problem.todo}"], EXIT_FAILED
    if _is_migration_error(exc):
        return [f"error: {exc}"], EXIT_MISCONFIGURED
    if isinstance(exc, AgentHubError):
        return [f"error: {exc.detail or exc.title}"], EXIT_FAILED
    return None


def _is_migration_error(exc: Exception) -> bool:
    """An Alembic command's error (an unknown revision): without importing Alembic, which
    logs its plugins when imported; one of its errors means it is imported already."""
    errors = sys.modules.get("alembic.util.exc")
    return errors is not None and isinstance(exc, errors.CommandError)


def _setting_error(error: Any) -> str:
    """`AGENTHUB_PORT: expected an integer, got 'abc'` for one of `Settings`' errors."""
    from agenthub.config import variable

    field = str(error["loc"][0]) if error["loc"] else ""
    kind, context = error["type"], error.get("ctx", {})
    if kind == "value_error":  # our validators' messages say what was wrong and the form
        return f"{variable(field)}: {context['error']}"
    if kind in _EXPECTED:
        expected = f"expected {_EXPECTED[kind]}"
    elif kind in _BOUNDS:
        expected = "expected " + _BOUNDS[kind].format(**context)
    elif kind == "literal_error":
        expected = f"expected one of {context['expected']}"
    else:
        expected = error["msg"]
    shown = "**********" if any(m in field for m in _SECRET_MARKERS) else repr(error["input"])
    return f"{variable(field)}: {expected}, got {shown}"
