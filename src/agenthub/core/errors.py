"""One error hierarchy, rendered as RFC 9457 problem details on every error path."""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any, cast

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout  # every pooled connection busy
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://agenthub.dev/problems/"

log = structlog.get_logger("agenthub.errors")


class FieldError(BaseModel):
    field: str
    message: str


class Problem(BaseModel):
    """The body of every error response."""

    type: str
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[FieldError] | None = None


class AgentHubError(Exception):
    """Base of every error a client may see; subclasses set status and problem type."""

    status: int = 500
    code: str = "internal-error"
    title: str = "Internal Server Error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        keep_writes: bool = False,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        # True when the request's writes (an audit record, a revocation) must commit anyway.
        self.keep_writes = keep_writes
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})


class BadRequest(AgentHubError):
    status, code, title = 400, "bad-request", "Bad Request"


class Unauthorized(AgentHubError):
    status, code, title = 401, "unauthorized", "Unauthorized"


class Forbidden(AgentHubError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(AgentHubError):
    status, code, title = 404, "not-found", "Not Found"


class Conflict(AgentHubError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(AgentHubError):
    status, code, title = 413, "payload-too-large", "Payload Too Large"


class UnsupportedMediaType(AgentHubError):
    status, code, title = 415, "unsupported-media-type", "Unsupported Media Type"


class ValidationFailed(AgentHubError):
    status, code, title = 422, "validation-error", "Validation Error"


class RateLimited(AgentHubError):
    status, code, title = 429, "rate-limited", "Too Many Requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after))})


class ServiceUnavailable(AgentHubError):
    status, code, title = 503, "service-unavailable", "Service Unavailable"


def problem_response(
    status: int,
    *,
    code: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    """A problem+json response; `code` defaults to a slug of the status phrase."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    slug = code or phrase.lower().replace(" ", "-")
    body = Problem(
        type=PROBLEM_BASE + slug,
        title=title or phrase,
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors) if errors is not None else None,
    )
    return JSONResponse(
        body.model_dump(exclude_none=True),
        status_code=status,
        headers=dict(headers or {}),
        media_type=PROBLEM_JSON,
    )


def _field_name(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or (str(loc[0]) if loc else "body")


def validation_errors(raw: Sequence[Mapping[str, Any]]) -> list[FieldError]:
    """FastAPI/pydantic error entries as `{field, message}` pairs without echoing input."""
    return [FieldError(field=_field_name(e.get("loc", ())), message=str(e["msg"])) for e in raw]


def render_error(exc: AgentHubError, instance: str | None = None) -> JSONResponse:
    """The problem response of `exc` (for middleware, which runs outside the handlers)."""
    return problem_response(
        exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        errors=exc.errors,
        headers=exc.headers,
        instance=instance,
    )


async def _agenthub_error(request: Request, exc: Exception) -> JSONResponse:
    return render_error(cast(AgentHubError, exc), request.url.path)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    raw = cast(RequestValidationError, exc).errors()
    if any(e.get("type") == "json_invalid" for e in raw):
        return problem_response(
            400, code="malformed-json", detail="The request body is not valid JSON."
        )
    return problem_response(
        422,
        code="validation-error",
        title="Validation Error",
        detail="The request did not pass validation.",
        errors=validation_errors(raw),
        instance=request.url.path,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    exc = cast(StarletteHTTPException, exc)
    if isinstance(exc.__cause__, RecursionError):  # FastAPI's 400 for a body it cannot parse
        detail = "The request body is not valid JSON: it is nested too deeply."
        return problem_response(400, code="malformed-json", detail=detail)
    detail = exc.detail if isinstance(exc.detail, str) else None
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"No route matches {request.method} {request.url.path}."
    return problem_response(
        exc.status_code, detail=detail, headers=exc.headers, instance=request.url.path
    )


# SQLSTATEs (PostgreSQL) meaning the database cannot serve: connection failures (08...),
# operator intervention such as a restart (57P...), a schema never migrated (42P01). SQLite
# reports the same situations as OperationalError.
_UNAVAILABLE_SQLSTATES = ("08", "57P", "42P01")


# SQLSTATEs (PostgreSQL) of text the database cannot store, such as a NUL character in a
# query parameter or a JSON string. The client sent it: a 422, not a server error.
_INVALID_TEXT_SQLSTATES = ("22021", "22P05")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = exc
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


def _has_sqlstate(exc: BaseException, prefixes: tuple[str, ...]) -> bool:
    return any(
        isinstance(state := getattr(seen, "sqlstate", None), str) and state.startswith(prefixes)
        for seen in _chain(exc)
    )


def _is_unreachable(exc: BaseException) -> bool:
    """The database host cannot be reached: its name does not resolve (a container being
    restarted), or every address it resolves to refused (asyncio then raises one plain
    OSError for all of them, e.g. for `localhost` on ::1 and 127.0.0.1)."""
    if isinstance(exc, socket.gaierror):
        return True
    return type(exc) is OSError and str(exc).startswith("Multiple exceptions: ")


def _is_connection_error(exc: BaseException) -> bool:
    if _has_sqlstate(exc, _UNAVAILABLE_SQLSTATES):
        return True
    for seen in _chain(exc):
        if isinstance(
            seen,
            OperationalError
            | InterfaceError
            | ConnectionError
            | TimeoutError
            | PoolTimeout
            | sqlite3.OperationalError,  # locked or unreadable, from a `db.unit`
        ):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        if _is_unreachable(seen):
            return True
        name = type(seen).__name__
        if "Connection" in name or "CannotConnect" in name or "ShutdownError" in name:
            return True
    return False


def render_unexpected(exc: BaseException) -> JSONResponse:
    """The answer to an exception no handler claimed: 503 for an unreachable database, 422 for
    text the database refuses (a NUL character), else 500.

    The exception is logged (with the request id bound by the middleware); nothing of it
    reaches the client.
    """
    if _has_sqlstate(exc, _INVALID_TEXT_SQLSTATES):
        return problem_response(
            422,
            code="validation-error",
            title="Validation Error",
            detail="The request contains text the database cannot store.",
            errors=[
                FieldError(field="request", message="must not contain NUL (\\u0000) characters")
            ],
        )
    if _is_connection_error(exc):
        log.warning("database_unavailable", error_type=type(exc).__name__)
        return problem_response(
            503,
            code="database-unavailable",
            detail="The database is unavailable; retry shortly.",
            headers={"Retry-After": "5"},
        )
    log.error("unhandled_error", error_type=type(exc).__name__, exc_info=exc)
    return problem_response(
        500, code="internal-error", detail="An unexpected error occurred; it has been logged."
    )


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    return render_unexpected(exc)


def install_error_handlers(app: FastAPI) -> None:
    """Route every error path of the app through problem details."""
    app.add_exception_handler(AgentHubError, _agenthub_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for these statuses; the OpenAPI hook gives them problem bodies."""
    return {status: {"description": HTTPStatus(status).phrase} for status in statuses}
