"""A chat client's most frequent reads, answered without FastAPI's per-request machinery:
`GET /v1/sessions/{id}` and the page `GET /v1/sessions/{id}/messages`.

FastAPI's routing, dependency solving and response validation cost more than these reads
themselves (bench/README.md, hot path). `HotSessionReads` answers the plain case in front of
the router: a Bearer access token whose login is active, no query parameters but the ones
named below with plain values. It runs the same checks and service functions as the routes
(the login check, the user's rate limit, ownership) and the same response models, in one
unit of work, so the answer is the one the route would give. Anything else (an API key, a
cookie, a cursor, a value FastAPI would refuse, a bad token) goes on to the route, which
answers it as documented; so does any unexpected failure before the answer starts, as these
reads change nothing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.types import ASGIApp, Receive, Scope, Send

from agenthub.auth.credentials import for_access_token
from agenthub.core.errors import AgentHubError, render_error
from agenthub.core.ids import is_valid
from agenthub.core.ownership import get_owned
from agenthub.core.pagination import MAX_LIMIT, Page, PageParams
from agenthub.core.ratelimit import consume_user_limit
from agenthub.core.security import TokenError, decode_access_token, looks_like_jwt
from agenthub.db.engine import Database
from agenthub.sessions import messages
from agenthub.sessions.models import ChatSession
from agenthub.sessions.schemas import MessageOut, SessionDetail, SessionOut

_PATH = re.compile(r"/v1/sessions/([^/]{1,64})(/messages)?")
_COUNT = re.compile(r"0|[1-9][0-9]{0,2}")
MAX_EMBEDDED = 200

Query = dict[str, str]
Read = Callable[[AsyncSession, ChatSession, Query], Awaitable[bytes | None]]


@dataclass(frozen=True)
class Template:
    """The matched route's full template, where the request log and metrics look for it."""

    path: str


SESSION = Template("/v1/sessions/{session_id}")
MESSAGES = Template("/v1/sessions/{session_id}/messages")


class HotSessionReads:
    """Pure-ASGI middleware answering the plain case of the two reads (see the module)."""

    def __init__(self, app: ASGIApp, *, database: Database, secret: str) -> None:
        self.app = app
        self.database = database
        self.secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _PATH.fullmatch(scope["path"])
            if match is not None and await self._answered(scope, receive, send, match):
                return
        await self.app(scope, receive, send)

    async def _answered(
        self, scope: Scope, receive: Receive, send: Send, match: re.Match[str]
    ) -> bool:
        """Answer the request if it is the plain case; False to leave it to the route."""
        claims = _access_claims(scope, self.secret)
        query = _query(scope)
        if claims is None or query is None:
            return False
        session_id, is_page = match.group(1), match.group(2) is not None
        if not is_valid(session_id, "ses"):  # `/v1/sessions/stats`, or nobody's session
            return False
        read, route = (_page, MESSAGES) if is_page else (_detail, SESSION)
        try:
            async with self.database.transaction() as db:
                credential = await for_access_token(db, claims)
                if credential is None:
                    return False
                scope.setdefault("state", {})["user_id"] = credential.user.id
                await consume_user_limit(scope, credential.user.id)
                user_id = credential.user.id
                chat = await get_owned(db, ChatSession, session_id, user_id, what="Session")
                body = await read(db, chat, query)
        except AgentHubError as exc:
            scope["route"] = route
            await render_error(exc, scope["path"])(scope, receive, send)
            return True
        except Exception:  # the route runs the read again and reports what failed
            return False
        if body is None:
            return False
        scope["route"] = route
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return True


async def _detail(db: AsyncSession, chat: ChatSession, query: Query) -> bytes | None:
    """`GET /v1/sessions/{id}[?messages=N]`."""
    if not set(query) <= {"messages"}:
        return None
    last = _count(query.get("messages", "0"), MAX_EMBEDDED)
    if last is None:
        return None
    recent = await messages.last_messages(db, chat, last)
    detail = SessionDetail(
        **SessionOut.model_validate(chat).model_dump(),
        messages=[MessageOut.model_validate(m) for m in recent],
    )
    return detail.model_dump_json().encode()


async def _page(db: AsyncSession, chat: ChatSession, query: Query) -> bytes | None:
    """`GET /v1/sessions/{id}/messages[?limit=N][&order=asc|desc]`: no cursor, no filter."""
    if not set(query) <= {"limit", "order"}:
        return None
    limit = _count(query.get("limit", "50"), MAX_LIMIT)
    order = query.get("order", "asc")
    if not limit or order not in ("asc", "desc"):
        return None
    params = PageParams(limit=limit, after=None, before=None, order=order)  # type: ignore[arg-type]
    rows, has_more, cursor = await messages.list_messages(db, chat, params)
    page = Page[MessageOut](
        data=[MessageOut.model_validate(r) for r in rows], has_more=has_more, next_cursor=cursor
    )
    return page.model_dump_json().encode()


def _access_claims(scope: Scope, secret: str) -> dict[str, object] | None:
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
