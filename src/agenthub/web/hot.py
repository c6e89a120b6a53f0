"""Hot reads: the plain case of frequent `GET` requests, answered in front of FastAPI's router.

FastAPI's routing, dependency solving and response validation cost several times what these
reads do themselves (bench/hotpath.py). A domain declares a `HotRead`: its path pattern, its
route's template, and a function that answers the plain case from one unit of work on the
driver's connection (`db.unit`) with the same checks, statements and response models as its
route, or returns None to leave the request to the route. `HotReads` runs them for requests
with a Bearer access token that verifies; anything else (an API key, a cookie, a bad token)
goes on to the route, and so does a read that fails unexpectedly (reads change nothing, so
the route may run them again). A refusal the read raises (`AgentHubError`: 404, 429) is
answered as the route's error handlers would.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from agenthub.core.errors import AgentHubError, render_error
from agenthub.core.pagination import DEFAULT_LIMIT, MAX_LIMIT
from agenthub.core.security import TokenError, decode_access_token, looks_like_jwt
from agenthub.db.engine import Database
from agenthub.db.unit import Row, Unit
from agenthub.web.ratelimit import consume_user_limit

Claims = dict[str, Any]
Query = dict[str, str]
_COUNT = re.compile(r"0|[1-9][0-9]{0,2}")


@dataclass(frozen=True)
class Template:
    """The matched route's full template, where the request log and metrics look for it."""

    path: str


Read = Callable[[Unit, Scope, Claims, tuple[str, ...], Query], Awaitable[bytes | None]]
"""The JSON body of the plain case (from the path's groups and the query), or None."""


@dataclass(frozen=True)
class HotRead:
    """A `GET` answered in front of the router when `pattern` matches the whole path."""

    pattern: re.Pattern[str]
    template: Template
    read: Read


class HotReads:
    """Pure-ASGI middleware running the `HotRead`s (see the module)."""

    def __init__(
        self, app: ASGIApp, *, database: Database, secret: str, reads: Sequence[HotRead]
    ) -> None:
        self.app = app
        self.database = database
        self.secret = secret
        self.reads = tuple(reads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            for hot in self.reads:
                if (match := hot.pattern.fullmatch(scope["path"])) is not None:
                    if await self._answer(scope, receive, send, hot, match.groups()):
                        return
                    break
        await self.app(scope, receive, send)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, hot: HotRead, params: tuple[str, ...]
    ) -> bool:
        claims = access_claims(scope, self.secret)
        query = query_of(scope)
        if claims is None or query is None:
            return False
        try:
            async with self.database.unit(writes=False) as unit:
                body = await hot.read(unit, scope, claims, params, query)
        except AgentHubError as exc:
            await render(scope, receive, send, hot.template, render_error(exc, scope["path"]))
            return True
        except Exception:  # the route runs the read again and reports what failed
            return False
        if body is None:
            return False
        await answer(scope, send, hot.template, 200, body)
        return True


async def count_caller(scope: Scope, user_id: str) -> None:
    """The caller is known: named in the request log, and counted against their rate limit
    (429 when it is spent), as the auth dependency does for a route."""
    scope.setdefault("state", {})["user_id"] = user_id
    await consume_user_limit(scope, user_id)


def access_claims(scope: Scope, secret: str) -> Claims | None:
    """The claims of the request's Bearer access token, if it has a valid one."""
    authorization = [v for k, v in scope["headers"] if k == b"authorization"]
    if len(authorization) != 1:
        return None
    scheme, _, token = authorization[0].decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not looks_like_jwt(token):
        return None
    try:
        return decode_access_token(secret, token)
    except TokenError:
        return None


def query_of(scope: Scope) -> Query | None:
    """The query parameters, each named once; None otherwise."""
    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    query = dict(pairs)
    return query if len(query) == len(pairs) else None


def first_page_query(query: Query, default_order: str) -> tuple[int, str] | None:
    """The `limit` and `order` of a first page asked for plainly (no other parameter, plain
    values, the list routes' defaults); None otherwise."""
    limit = count(query.get("limit", str(DEFAULT_LIMIT)), MAX_LIMIT)
    order = query.get("order", default_order)
    if not set(query) <= {"limit", "order"} or not limit or order not in ("asc", "desc"):
        return None
    return limit, order


def first_page(rows: list[Row], limit: int) -> dict[str, Any]:
    """The first page of a list, from `limit + 1` rows read in its order, as `Page` takes it
    (the cursor is the last row's id, as `core.pagination.keyset_page` gives it)."""
    more = len(rows) > limit
    return {
        "data": rows[:limit],
        "has_more": more,
        "next_cursor": rows[limit - 1]["id"] if more else None,
    }


def count(value: str, maximum: int) -> int | None:
    """A plain decimal number from 0 to `maximum`; None for anything else."""
    if _COUNT.fullmatch(value) is None or int(value) > maximum:
        return None
    return int(value)


async def answer(scope: Scope, send: Send, route: Template, status: int, body: bytes) -> None:
    """A JSON response, labelled with the route it answers for."""
    scope["route"] = route
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def render(
    scope: Scope, receive: Receive, send: Send, route: Template, response: Response
) -> None:
    """An error's problem response, labelled with the route it answers for."""
    scope["route"] = route
    await response(scope, receive, send)
