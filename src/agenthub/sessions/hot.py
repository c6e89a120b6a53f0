"""A chat client's most frequent requests, answered without FastAPI's per-request machinery
(`web.hot`): the reads `GET /v1/sessions`, `GET /v1/sessions/{id}` and its latest page
`GET /v1/sessions/{id}/messages`, and the append `POST /v1/sessions/{id}/messages`.

The plain case only: for the reads no query parameters but the ones named below with plain
values; for the append a Bearer access token, a JSON body the route's model accepts, without
`respond` and without an `Idempotency-Key`, to a session that is neither archived nor
deleted. They run the same checks as the routes (the login check, the user's rate limit,
ownership), the same statements and models, and the same events, in one unit of work on the
driver's connection (`db.unit`: no ORM), so the answer is the one the route would give.
Anything else goes on to the route, which answers it as documented; an append never does
once its transaction began.
"""

from __future__ import annotations

import re
from typing import cast

from pydantic import ValidationError
from sqlalchemy import Table, bindparam, select
from starlette.types import ASGIApp, Receive, Scope, Send

from agenthub.config import Settings
from agenthub.core.errors import AgentHubError, render_error, render_unexpected
from agenthub.core.ids import is_valid
from agenthub.core.middleware import Replay, header
from agenthub.core.pagination import Page
from agenthub.db.engine import Database
from agenthub.db.models.auth import User
from agenthub.db.models.sessions import ChatSession, Message
from agenthub.db.unit import Row, Unit
from agenthub.sessions import messages
from agenthub.sessions.schemas import MessageCreate, MessageOut, SessionDetail, SessionOut
from agenthub.web.credentials import ACTIVE_LOGIN, ACTIVE_USER_ROW, login_params
from agenthub.web.hot import (
    Claims,
    HotRead,
    Query,
    Template,
    access_claims,
    answer,
    count,
    count_caller,
    first_page,
    first_page_query,
    render,
)

MAX_EMBEDDED = 200
SESSION = Template("/v1/sessions/{session_id}")
MESSAGES = Template("/v1/sessions/{session_id}/messages")
_MESSAGES_PATH = re.compile(r"/v1/sessions/([^/]{1,64})/messages")

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

_ACTIVE = {
    order: select(_SESSIONS)
    .where(
        _SESSIONS.c.user_id == bindparam("user_id"),
        _SESSIONS.c.deleted_at.is_(None),
        _SESSIONS.c.archived_at.is_(None),
    )
    .order_by(
        *(
            column.asc() if order == "asc" else column.desc()
            for column in (_SESSIONS.c.last_activity_at, _SESSIONS.c.id)
        )
    )
    .limit(bindparam("limit"))
    for order in ("asc", "desc")
}
"""The first page of a user's active sessions (the list route's keyset page without a
cursor or filter: by activity, the id breaking ties)."""

_OWNED_BY_ACTIVE_LOGIN = select(_SESSIONS).where(
    _SESSIONS.c.id == bindparam("id"), _SESSIONS.c.user_id == User.id, *ACTIVE_LOGIN
)


async def _owned_chat(
    unit: Unit, scope: Scope, claims: Claims, session_id: str, *, active: bool = False
) -> Row | None:
    """The caller's session, read with the login check every request makes (one statement);
    then the caller is counted (429). None when the id is not a session's, the login has
    ended or the session is not theirs, and with `active` when it is archived or deleted:
    the route tells which (422, 401, 404, or what an append to such a session does)."""
    if not is_valid(session_id, "ses"):
        return None
    chat = await unit.row(_OWNED_BY_ACTIVE_LOGIN, {"id": session_id, **login_params(claims)})
    if chat is None or (active and (chat["archived_at"] or chat["deleted_at"]) is not None):
        return None
    await count_caller(scope, chat["user_id"])
    return chat


async def _detail(
    unit: Unit, scope: Scope, claims: Claims, params: tuple[str, ...], query: Query
) -> bytes | None:
    """`GET /v1/sessions/{id}[?messages=N]`."""
    last = count(query.get("messages", "0"), MAX_EMBEDDED)
    if not set(query) <= {"messages"} or last is None:
        return None
    chat = await _owned_chat(unit, scope, claims, params[0])
    if chat is None:
        return None
    recent = (
        await unit.rows(_LATEST["desc"], {"session_id": chat["id"], "limit": last}) if last else []
    )
    detail = SessionDetail.model_validate({**chat, "messages": recent[::-1]})
    return detail.model_dump_json().encode()


async def _page(
    unit: Unit, scope: Scope, claims: Claims, params: tuple[str, ...], query: Query
) -> bytes | None:
    """`GET /v1/sessions/{id}/messages[?limit=N][&order=asc|desc]`: no cursor, no filter."""
    asked = first_page_query(query, "asc")
    if asked is None:
        return None
    limit, order = asked
    chat = await _owned_chat(unit, scope, claims, params[0])
    if chat is None:
        return None
    rows = await unit.rows(_LATEST[order], {"session_id": chat["id"], "limit": limit + 1})
    return Page[MessageOut].model_validate(first_page(rows, limit)).model_dump_json().encode()


async def _list(
    unit: Unit, scope: Scope, claims: Claims, _: tuple[str, ...], query: Query
) -> bytes | None:
    """`GET /v1/sessions[?limit=N][&order=asc|desc]`: the first page of the active sessions,
    no cursor, no filter."""
    asked = first_page_query(query, "desc")
    if asked is None:
        return None
    limit, order = asked
    user = await unit.row(ACTIVE_USER_ROW, login_params(claims))
    if user is None:  # the route answers 401
        return None
    await count_caller(scope, user["id"])
    rows = await unit.rows(_ACTIVE[order], {"user_id": user["id"], "limit": limit + 1})
    return Page[SessionOut].model_validate(first_page(rows, limit)).model_dump_json().encode()


READS = (
    HotRead(re.compile(r"/v1/sessions"), Template("/v1/sessions"), _list),
    HotRead(re.compile(r"/v1/sessions/([^/]{1,64})"), SESSION, _detail),
    HotRead(_MESSAGES_PATH, MESSAGES, _page),
)


class HotAppend:
    """Pure-ASGI middleware appending the plain case's message (see the module)."""

    def __init__(self, app: ASGIApp, *, database: Database, settings: Settings) -> None:
        self.app = app
        self.database = database
        self.secret = settings.signing_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            _MESSAGES_PATH.fullmatch(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        claims = access_claims(scope, self.secret) if match is not None else None
        if match is not None and claims is not None:
            left = await self._append(scope, receive, send, claims, match.group(1))
            if left is None:
                return
            receive = left
        await self.app(scope, receive, send)

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
            await render(scope, receive, send, MESSAGES, render_error(exc, scope["path"]))
            return None
        except Exception as exc:
            await render(scope, receive, send, MESSAGES, render_unexpected(exc))
            return None
        await answer(scope, send, MESSAGES, 201, created)
        return None
