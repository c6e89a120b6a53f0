"""A chat client's most frequent requests, answered without FastAPI's per-request machinery:
`GET /v1/sessions/{id}`, the page `GET /v1/sessions/{id}/messages` and the append
`POST /v1/sessions/{id}/messages`.

FastAPI's routing, dependency solving and response validation cost more than these reads
themselves (bench/README.md, hot path). `HotSessionRoutes` answers the plain case in front of
the router: a Bearer access token whose login is active; for the reads no query parameters
but the ones named below with plain values, for the append a JSON body the route's model
accepts, without `respond` and without an `Idempotency-Key`, to a session that is neither
archived nor deleted. It runs the same checks as the routes (the login check, the user's
rate limit, ownership), the same statements and models, and the same events, in one unit of
work on the driver's connection (`db.unit`: no ORM), so the answer is the one the route
would give. Anything else (an API key, a cookie, a cursor, a value FastAPI would refuse, a
bad token) goes on to the route, which answers it as documented; so does an unexpected
failure of a read (reads change nothing, so the route may run them again), never one of an
append.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qsl

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, select
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from agenthub.auth.credentials import ACTIVE_LOGIN, login_params
from agenthub.auth.models import User
from agenthub.config import Settings
from agenthub.core.errors import AgentHubError, render_error, render_unexpected
from agenthub.core.ids import is_valid
from agenthub.core.middleware import Replay, header
from agenthub.core.pagination import MAX_LIMIT, Page
from agenthub.core.ratelimit import consume_user_limit
from agenthub.core.security import TokenError, decode_access_token, looks_like_jwt
from agenthub.db.engine import Database
from agenthub.db.unit import Row, Unit
from agenthub.sessions import messages
from agenthub.sessions.models import ChatSession, Message
from agenthub.sessions.schemas import MessageCreate, MessageOut, SessionDetail

_PATH = re.compile(r"/v1/sessions/([^/]{1,64})(/messages)?")
_COUNT = re.compile(r"0|[1-9][0-9]{0,2}")
MAX_EMBEDDED = 200

Claims = dict[str, Any]
Query = dict[str, str]


@dataclass(frozen=True)
class Template:
    """The matched route's full template, where the request log and metrics look for it."""

    path: str


SESSION = Template("/v1/sessions/{session_id}")
MESSAGES = Template("/v1/sessions/{session_id}/messages")

_MESSAGES = cast(Table, Message.__table__)
_SESSIONS = cast(Table, ChatSession.__table__)
_LATEST = {
    order: select(_MESSAGES)
    .where(_MESSAGES.c.session_id == bindparam("session_id"))
    .order_by(_MESSAGES.c.id.asc() if order == "asc" else _MESSAGES.c.id.desc())
    .limit(bindparam("limit"))
    for order in ("asc", "desc")
}
"""The first page of a session's messages (the list route's keyset page without a cursor,
by id, one more than the page to tell `has_more`); `desc`: its last messages."""

_OWNED_BY_ACTIVE_LOGIN = select(_SESSIONS).where(
    _SESSIONS.c.id == bindparam("id"), _SESSIONS.c.user_id == User.id, *ACTIVE_LOGIN
)


class HotSessionRoutes:
    """Pure-ASGI middleware answering the plain case of the three requests (see the module)."""

    def __init__(self, app: ASGIApp, *, database: Database, settings: Settings) -> None:
        self.app = app
        self.database = database
        self.secret = settings.signing_key
        self.session_limit = settings.max_sessions_per_agent_type

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        claims = _access_claims(scope, self.secret) if match is not None else None
        if match is not None and claims is not None and is_valid(match.group(1), "ses"):
            session_id, is_page = match.group(1), match.group(2) is not None
            if scope["method"] == "GET":
                if await self._read(scope, receive, send, claims, session_id, is_page):
                    return
            elif scope["method"] == "POST" and is_page:
                left = await self._append(scope, receive, send, claims, session_id)
                if left is None:
                    return
                receive = left
        await self.app(scope, receive, send)

    async def _read(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        claims: Claims,
        session_id: str,
        is_page: bool,
    ) -> bool:
        """Answer the read if it is the plain case; False to leave it to the route."""
        query = _query(scope)
        if query is None:
            return False
        read, route = (_page, MESSAGES) if is_page else (_detail, SESSION)
        try:
            async with self.database.unit(writes=False) as unit:
                chat = await _owned_chat(unit, scope, claims, session_id)
                body = None if chat is None else await read(unit, chat, query)
        except AgentHubError as exc:
            await _render(scope, receive, send, route, render_error(exc, scope["path"]))
            return True
        except Exception:  # the route runs the read again and reports what failed
            return False
        if body is None:
            return False
        await _answer(scope, send, route, 200, body)
        return True

    async def _append(
        self, scope: Scope, receive: Receive, send: Send, claims: Claims, session_id: str
    ) -> Receive | None:
        """Append the plain case's message (None: answered); otherwise the `receive` that
        gives the route the whole body again.

        Nothing falls back to the route once the transaction began: a failure there is
        answered as the route's would be (the error handlers' own rendering), never run twice.
        """
        if (
            scope["query_string"]
            or header(scope, b"content-type") != "application/json"
            or header(scope, b"idempotency-key") is not None
        ):
            return receive
        received = [await receive()]
        while received[-1]["type"] == "http.request" and received[-1].get("more_body", False):
            received.append(await receive())
        again = Replay(received, receive)
        body = b"".join(m.get("body", b"") for m in received if m["type"] == "http.request")
        try:
            new = MessageCreate.model_validate_json(body)
        except ValidationError:
            return again
        if new.respond:  # the reply's job is the route's
            return again
        try:
            async with self.database.unit() as unit:
                chat = await _owned_chat(unit, scope, claims, session_id, active=True)
                if chat is None:
                    return again
                message = await messages.append_to_active(unit, chat, new)
                created = MessageOut.model_validate(message).model_dump_json().encode()
        except AgentHubError as exc:
            await _render(scope, receive, send, MESSAGES, render_error(exc, scope["path"]))
            return None
        except Exception as exc:
            await _render(scope, receive, send, MESSAGES, render_unexpected(exc))
            return None
        await _answer(scope, send, MESSAGES, 201, created)
        return None


async def _owned_chat(
    unit: Unit, scope: Scope, claims: Claims, session_id: str, *, active: bool = False
) -> Row | None:
    """The caller's session, read with the login check every request makes (one statement);
    then the user's rate limit is counted (429). None when the login has ended or the
    session is not theirs, and with `active` when it is archived or deleted: the route
    tells which (401, 404, or what an append to such a session does)."""
    chat = await unit.row(_OWNED_BY_ACTIVE_LOGIN, {"id": session_id, **login_params(claims)})
    if chat is None or (active and (chat["archived_at"] or chat["deleted_at"]) is not None):
        return None
    scope.setdefault("state", {})["user_id"] = chat["user_id"]
    await consume_user_limit(scope, chat["user_id"])
    return chat


async def _answer(scope: Scope, send: Send, route: Template, status: int, body: bytes) -> None:
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


async def _render(
    scope: Scope, receive: Receive, send: Send, route: Template, response: Response
) -> None:
    """An error's problem response, labelled with the route it answers for."""
    scope["route"] = route
    await response(scope, receive, send)


async def _detail(unit: Unit, chat: Row, query: Query) -> bytes | None:
    """`GET /v1/sessions/{id}[?messages=N]`."""
    if not set(query) <= {"messages"}:
        return None
    last = _count(query.get("messages", "0"), MAX_EMBEDDED)
    if last is None:
        return None
    recent = (
        await unit.rows(_LATEST["desc"], {"session_id": chat["id"], "limit": last}) if last else []
    )
    detail = SessionDetail.model_validate({**chat, "messages": recent[::-1]})
    return detail.model_dump_json().encode()


async def _page(unit: Unit, chat: Row, query: Query) -> bytes | None:
    """`GET /v1/sessions/{id}/messages[?limit=N][&order=asc|desc]`: no cursor, no filter."""
    if not set(query) <= {"limit", "order"}:
        return None
    limit = _count(query.get("limit", "50"), MAX_LIMIT)
    order = query.get("order", "asc")
    if not limit or order not in ("asc", "desc"):
        return None
    rows = await unit.rows(_LATEST[order], {"session_id": chat["id"], "limit": limit + 1})
    page = Page[MessageOut].model_validate(
        {
            "data": rows[:limit],
            "has_more": len(rows) > limit,
            "next_cursor": rows[limit - 1]["id"] if len(rows) > limit else None,
        }
    )
    return page.model_dump_json().encode()


def _access_claims(scope: Scope, secret: str) -> Claims | None:
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


def _query(scope: Scope) -> Query | None:
    """The query parameters, each named once; None otherwise."""
    pairs = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    query = dict(pairs)
    return query if len(query) == len(pairs) else None


def _count(value: str, maximum: int) -> int | None:
    """A plain decimal number from 0 to `maximum`; None for anything else."""
    if _COUNT.fullmatch(value) is None or int(value) > maximum:
        return None
    return int(value)
