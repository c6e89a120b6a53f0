"""Baseline for `bench/hotpath.py`: the three hot routes of a chat on the raw stack.

Bare Starlette (no FastAPI, middleware, ORM or pydantic), PyJWT, and the database driver called
directly: stdlib `sqlite3` on one connection opened at start (WAL, agenthub's pragmas), used
straight from the async handlers, or an `asyncpg` pool as large as agenthub's default. Same
tables, same migrated database and same tokens as agenthub. Every request checks the bearer JWT
(same secret, algorithm and required claims), loads the user joined with the token's login
(both active, else 401) and the caller's session (else 404), then:

- `POST /v1/sessions/{id}/messages` `{"role", "content"}`: one transaction inserting the message
  and bumping the session's `message_count` and activity times; 201 with the message;
- `GET /v1/sessions/{id}/messages?order=desc&limit=20`: one `SELECT` of `limit + 1` rows by id;
  200 `{"data", "has_more", "next_cursor"}`;
- `GET /v1/sessions/{id}`: 200 with the session row.

Run by uvicorn as a factory: `hotpath_baseline:create_sqlite_app` or `create_postgres_app`.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
from sqlalchemy.engine import make_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agenthub.config import Settings
from agenthub.core.ids import new_id
from agenthub.db.engine import SQLITE_BUSY_TIMEOUT_MS
from common import access_token_ids, pg_dsn

# Written with asyncpg's `$n` placeholders; SQLite reads them as `?n`.
USER_SQL = (
    "SELECT users.id FROM users JOIN logins ON logins.user_id = users.id "
    "WHERE users.id = $1 AND users.deleted_at IS NULL AND logins.id = $2 "
    "AND logins.revoked_at IS NULL"
)
SESSION_COLUMNS = (
    "id, user_id, agent_id, agent_type, project_id, title, metadata, message_count, "
    "prompt_tokens, completion_tokens, last_activity_at, archived_at, deleted_at, created_at, "
    "updated_at"
)
SESSION_SQL = (
    f"SELECT {SESSION_COLUMNS} FROM sessions "  # noqa: S608 - constant column list
    "WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL"
)
MESSAGE_COLUMNS = (
    "id, session_id, role, content, metadata, prompt_tokens, completion_tokens, created_at, "
    "tool_calls, tool_call_id"
)
PAGE_SQL = {
    order: f"SELECT {MESSAGE_COLUMNS} FROM messages "  # noqa: S608 - constant column list
    f"WHERE session_id = $1 ORDER BY id {order} LIMIT $2"
    for order in ("asc", "desc")
}
INSERT_MESSAGE_SQL = (
    "INSERT INTO messages (id, session_id, user_id, role, content, metadata, prompt_tokens, "
    "completion_tokens, created_at) VALUES ($1, $2, $3, $4, $5, '{}', 0, 0, $6)"
)
BUMP_SESSION_SQL = (
    "UPDATE sessions SET message_count = message_count + 1, last_activity_at = $1, "
    "updated_at = $1 WHERE id = $2"
)
ROLES = ("user", "assistant", "system", "tool")
MAX_LIMIT = 100
# SQLAlchemy's storage format of a SQLite DATETIME (agenthub keeps UTC there).
SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


class Connection(Protocol):
    """What a request needs of the database: reads, one write transaction, time values."""

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]: ...

    async def transaction(self, *statements: tuple[str, tuple[Any, ...]]) -> None: ...

    def stamp(self, at: datetime) -> Any: ...


Connect = Callable[[], AbstractAsyncContextManager[Connection]]
Handler = Callable[[Connection, Row, Request], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


@functools.cache
def _qmark(sql: str) -> str:
    """The statement with SQLite's numbered placeholders (`?1`) for asyncpg's (`$1`)."""
    return sql.replace("$", "?")


class SqliteConnection:
    """One stdlib `sqlite3` connection, called on the event loop (no thread hop)."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        self.db.row_factory = sqlite3.Row
        for pragma in (
            "journal_mode=WAL",
            f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
            "foreign_keys=ON",
            "synchronous=NORMAL",
        ):
            self.db.execute(f"PRAGMA {pragma}")

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: sqlite3.Row | None = self.db.execute(_qmark(sql), args).fetchone()
        return row

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        return self.db.execute(_qmark(sql), args).fetchall()

    async def transaction(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        with self.db:  # commits, or rolls back on error
            for sql, args in statements:
                self.db.execute(_qmark(sql), args)

    def stamp(self, at: datetime) -> str:
        return at.strftime(SQLITE_TIME_FORMAT)


class PostgresConnection:
    """A connection of the asyncpg pool, for one request."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        row: Row | None = await self.conn.fetchrow(sql, *args)
        return row

    async def fetch(self, sql: str, *args: Any) -> Sequence[Row]:
        rows: Sequence[Row] = await self.conn.fetch(sql, *args)
        return rows

    async def transaction(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        async with self.conn.transaction():
            for sql, args in statements:
                await self.conn.execute(sql, *args)

    def stamp(self, at: datetime) -> datetime:
        return at


def _iso(value: datetime | str | None) -> str | None:
    """UTC ISO 8601 with a `Z`, as agenthub renders its times (SQLite keeps them as text)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.replace(" ", "T") + "Z"
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _problem(status: int, title: str) -> JSONResponse:
    return JSONResponse({"title": title, "status": status}, status_code=status)


def _message(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "session_id": row["session_id"],
        "role": row["role"],
        "content": row["content"],
        "metadata": json.loads(row["metadata"]),
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "created_at": _iso(row["created_at"]),
        "tool_calls": json.loads(row["tool_calls"]) if row["tool_calls"] else None,
        "tool_call_id": row["tool_call_id"],
    }


def _session(row: Row) -> dict[str, Any]:
    status = "deleted" if row["deleted_at"] else "archived" if row["archived_at"] else "active"
    return {
        "id": row["id"],
        "agent_id": row["agent_id"],
        "agent_type": row["agent_type"],
        "project_id": row["project_id"],
        "title": row["title"],
        "metadata": json.loads(row["metadata"]),
        "status": status,
        "message_count": row["message_count"],
        "prompt_tokens": row["prompt_tokens"],
        "completion_tokens": row["completion_tokens"],
        "last_activity_at": _iso(row["last_activity_at"]),
        "archived_at": _iso(row["archived_at"]),
        "deleted_at": _iso(row["deleted_at"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "messages": [],
    }


async def append_message(conn: Connection, chat: Row, request: Request) -> Response:
    body = await request.json()
    role, content = body.get("role"), body.get("content")
    if role not in ROLES or not isinstance(content, str) or not content:
        return _problem(422, "role and content are required")
    now = datetime.now(UTC)
    message_id, at = new_id("msg"), conn.stamp(now)
    await conn.transaction(
        (INSERT_MESSAGE_SQL, (message_id, chat["id"], chat["user_id"], role, content, at)),
        (BUMP_SESSION_SQL, (at, chat["id"])),
    )
    message = {
        "id": message_id,
        "session_id": chat["id"],
        "role": role,
        "content": content,
        "metadata": {},
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "created_at": _iso(now),
        "tool_calls": None,
        "tool_call_id": None,
    }
    return JSONResponse(message, status_code=201)


async def list_messages(conn: Connection, chat: Row, request: Request) -> Response:
    order = request.query_params.get("order", "asc")
    try:
        limit = int(request.query_params.get("limit", "20"))
    except ValueError:
        limit = 0
    if order not in PAGE_SQL or not 1 <= limit <= MAX_LIMIT:
        return _problem(422, "invalid order or limit")
    rows = await conn.fetch(PAGE_SQL[order], chat["id"], limit + 1)
    data = [_message(row) for row in rows[:limit]]
    has_more = len(rows) > limit
    next_cursor = data[-1]["id"] if has_more else None
    return JSONResponse({"data": data, "has_more": has_more, "next_cursor": next_cursor})


async def get_session(conn: Connection, chat: Row, request: Request) -> Response:
    return JSONResponse(_session(chat))


def _owned_session_route(connect: Connect, secret: str, handler: Handler) -> Endpoint:
    """`handler` behind the token check (JWT, then the user and its login) and the owner
    check (the caller's session), on one connection."""

    async def endpoint(request: Request) -> Response:
        ids = access_token_ids(request.headers.get("authorization", ""), secret)
        if ids is None:
            return _problem(401, "unauthorized")
        user_id, login_id = ids
        async with connect() as conn:
            if await conn.fetchrow(USER_SQL, user_id, login_id) is None:
                return _problem(401, "unauthorized")
            chat = await conn.fetchrow(SESSION_SQL, request.path_params["session_id"], user_id)
            if chat is None:
                return _problem(404, "session not found")
            return await handler(conn, chat, request)

    return endpoint


def _app(connect: Connect, secret: str, lifespan: Lifespan) -> Starlette:
    messages = "/v1/sessions/{session_id}/messages"
    routes = [
        Route(messages, _owned_session_route(connect, secret, append_message), methods=["POST"]),
        Route(messages, _owned_session_route(connect, secret, list_messages), methods=["GET"]),
        Route(
            "/v1/sessions/{session_id}",
            _owned_session_route(connect, secret, get_session),
            methods=["GET"],
        ),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def create_sqlite_app() -> Starlette:
    """Starlette + `sqlite3` on agenthub's SQLite file (`AGENTHUB_DATABASE_URL`)."""
    settings = Settings()
    path = make_url(settings.database_url).database or ""
    opened: list[SqliteConnection] = []

    @asynccontextmanager
    async def connect() -> AsyncIterator[Connection]:
        yield opened[0]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened.append(SqliteConnection(path))
        try:
            yield
        finally:
            opened.pop().db.close()

    return _app(connect, settings.signing_key, lifespan)


def create_postgres_app() -> Starlette:
    """Starlette + an asyncpg pool of `db_pool_size` connections on agenthub's database."""
    settings = Settings()
    pools: list[Any] = []

    @asynccontextmanager
    async def connect() -> AsyncIterator[Connection]:
        async with pools[0].acquire() as conn:
            yield PostgresConnection(conn)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        size = settings.db_pool_size
        pools.append(
            await asyncpg.create_pool(pg_dsn(settings.database_url), min_size=size, max_size=size)
        )
        try:
            yield
        finally:
            await pools.pop().close()

    return _app(connect, settings.signing_key, lifespan)
