"""Pure-ASGI middleware: request context (id, timing, headers, last-resort errors), body limit,
valid Unicode in JSON bodies."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthub.core.errors import problem_response, render_error, render_unexpected
from agenthub.core.routes import RouteTemplates
from agenthub.core.text import dotted, may_hold_surrogate, not_unicode, surrogate_path

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

SECURITY_HEADERS: Mapping[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    # API responses need no sources; the HTML pages (/status, /docs, /redoc) set their own.
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}

_SECURITY_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
_OURS = frozenset((b"x-request-id", b"x-process-time"))

log = structlog.get_logger("agenthub.http")

UNMATCHED_ROUTE = "unmatched"


@dataclass(frozen=True)
class FinishedRequest:
    """An HTTP request once its response is over.

    A streamed response (its body sent in several parts: SSE, exports, downloads) is timed to
    its headers: that is its latency, as a client waiting for it sees it. How long the stream
    then stayed open is `stream_seconds`, apart.
    """

    method: str
    route: str  # the full route template, or "unmatched"
    status: int
    seconds: float
    stream_seconds: float | None = None


Observer = Callable[[FinishedRequest], None]


class RequestContextMiddleware:
    """Binds a request id into every log line, times the request and answers a crash with 500.

    Exceptions that escape every handler are rendered here (not re-raised), so no traceback
    ever reaches a client and the log line carries the request id. `observe` is told of every
    finished request, by full route template (metrics). A request slower than `slow_seconds`
    is logged as `slow_request`; a stream only when its headers were that slow.
    """

    def __init__(
        self, app: ASGIApp, *, slow_seconds: float = 2.0, observe: Observer | None = None
    ) -> None:
        self.app = app
        self.slow_seconds = slow_seconds
        self.observe = observe
        self.routes = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = header(scope, b"x-request-id")
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            request_id=request_id, method=scope.get("method", "WS"), path=scope["path"]
        )
        started = time.perf_counter()
        status = 0
        headers_after = 0.0
        streamed = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, headers_after, streamed
            if message["type"] == "http.response.start":
                status = message["status"]
                headers_after = time.perf_counter() - started
                message["headers"] = _with_context_headers(
                    message.get("headers", ()), request_id, headers_after
                )
            elif message["type"] == "http.response.body" and message.get("more_body", False):
                streamed = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if scope["type"] != "http" or status:
                raise
            await render_unexpected(exc)(scope, receive, send_with_headers)
        finally:
            if scope["type"] == "http":
                elapsed = time.perf_counter() - started
                self._finish(
                    scope,
                    FinishedRequest(
                        scope["method"],
                        self.routes.of(scope) or UNMATCHED_ROUTE,
                        status,
                        headers_after if streamed else elapsed,
                        elapsed if streamed else None,
                    ),
                )
            structlog.contextvars.clear_contextvars()

    def _finish(self, scope: Scope, request: FinishedRequest) -> None:
        if self.observe is not None:
            self.observe(request)
        fields = {
            "status": request.status,
            "latency_ms": _ms(request.seconds),
            "route": None if request.route == UNMATCHED_ROUTE else request.route,
            "user_id": scope.get("state", {}).get("user_id"),
        }
        if request.stream_seconds is not None:
            fields["stream_ms"] = _ms(request.stream_seconds)
        if request.seconds >= self.slow_seconds:
            log.warning("slow_request", **fields)
        else:
            log.info("request", **fields)


class BodyLimitMiddleware:
    """Answers 413 problem+json for bodies over the limit, declared or streamed.

    `limits` maps path prefixes to their own limit (uploads); the longest matching prefix wins.
    """

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, limits: Mapping[str, int] | None = None
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limits = sorted((limits or {}).items(), key=lambda kv: -len(kv[0]))

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.limits:
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        too_large = _TooLarge(limit)
        declared = header(scope, b"content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            await too_large(scope, receive, send)
            return
        received = 0
        overflowed = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, overflowed
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    overflowed = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal replaced
            if overflowed:
                if not replaced:
                    replaced = True
                    await too_large(scope, receive, send)
                return
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _BodyTooLarge:
            if not replaced:
                await too_large(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


class _TooLarge:
    """The 413 answer, built only when a body is actually over the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            413,
            code="payload-too-large",
            detail=f"The request body exceeds the limit of {self.limit} bytes.",
        )
        await response(scope, receive, send)


class JsonTextMiddleware:
    """Answers 422 for a JSON request body holding a lone surrogate, whatever the route and
    whatever the field: typed or free-form (metadata, preferences, options).

    A JSON body is read whole (FastAPI reads it whole before parsing anyway) and handed on
    as it came. Only a body that spells a surrogate (`may_hold_surrogate`: a scan for JSON's
    escape of one, true for almost no real body) is decoded here to find the field; one that
    does not parse is left to the app, which answers it as malformed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _is_json(header(scope, b"content-type")):
            await self.app(scope, receive, send)
            return
        messages = [await receive()]
        while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
            messages.append(await receive())
        if len(messages) == 1:
            body: bytes = messages[0].get("body", b"")
        else:
            body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if may_hold_surrogate(body) and (where := _surrogate_field(body)) is not None:
            refusal = render_error(not_unicode(where, "The request body"), scope["path"])
            await refusal(scope, receive, send)
            return
        await self.app(scope, Replay(messages, receive), send)


class Replay:
    """A `receive` that gives the messages already read, then what the client sends next."""

    def __init__(self, messages: list[Message], receive: Receive) -> None:
        self.messages = messages
        self.receive = receive

    async def __call__(self) -> Message:
        if self.messages:
            return self.messages.pop(0)
        return await self.receive()


def _is_json(content_type: str | None) -> bool:
    """Whether FastAPI parses a body of this type as JSON (`application/json`, `...+json`)."""
    if content_type is None:
        return False
    if content_type == "application/json":
        return True
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _surrogate_field(body: bytes) -> str | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    path = surrogate_path(value)
    return None if path is None else dotted(path) or "body"


def _with_context_headers(
    headers: Iterable[tuple[bytes, bytes]], request_id: str, seconds: float
) -> list[tuple[bytes, bytes]]:
    """A response's headers with its request id and time, and each security header it does
    not set itself."""
    kept = [(name, value) for name, value in headers if name.lower() not in _OURS]
    present = {name.lower() for name, _ in kept}
    kept.append((b"x-request-id", request_id.encode("latin-1")))
    kept.append((b"x-process-time", f"{seconds:.6f}".encode()))
    kept.extend(header for header in _SECURITY_HEADERS if header[0] not in present)
    return kept


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def header(scope: Scope, name: bytes) -> str | None:
    """The first value of a request header, decoded as Latin-1 (as HTTP allows)."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None
