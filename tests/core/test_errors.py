"""Every error path answers RFC 9457 problem details and leaks nothing of the server's insides."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from agenthub.app import create_app
from agenthub.config import Settings
from agenthub.core.errors import render_unexpected
from agenthub.core.ids import new_id
from agenthub.core.security import encode_access_token
from conftest import TEST_SECRET, asgi_client, custom_app, make_settings
from support import Account, assert_problem


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """`create_app` re-points the root handler at the current stderr; put the old ones back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# --- validation ---------------------------------------------------------------------------------


async def test_invalid_body_fields_are_422_with_field_errors(client: httpx.AsyncClient) -> None:
    secret_password = "tiny"
    response = await client.post(
        "/v1/auth/register", json={"email": "not-an-email", "password": secret_password}
    )
    body = assert_problem(response, 422)
    assert body["title"] == "Validation Error"
    assert body["type"].endswith("/validation-error")
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"email", "password"}
    for error in body["errors"]:
        assert set(error) == {"field", "message"}
        assert error["message"]
    # The rejected input is not echoed back (it may be a password).
    assert secret_password not in response.text


async def test_unknown_body_field_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/register",
        json={"email": "a@example.com", "password": "long enough pw", "is_admin": True},
    )
    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == ["is_admin"]


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=many", "order=sideways"])
async def test_invalid_query_parameter_is_422(
    client: httpx.AsyncClient, account: Account, query: str
) -> None:
    response = await client.get(f"/v1/user/audit?{query}", headers=account.headers)
    body = assert_problem(response, 422)
    assert [e["field"] for e in body["errors"]] == [query.split("=")[0]]
    assert body["instance"] == "/v1/user/audit"


async def test_missing_body_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/auth/login")
    body = assert_problem(response, 422)
    assert body["errors"], body


async def test_nul_characters_never_cause_a_500(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    audit = await client.get(
        "/v1/user/audit", params={"action": "login\x00"}, headers=account.headers
    )
    key = await client.post(
        "/v1/user/api-keys", json={"name": "nul\u0000name"}, headers=account.headers
    )
    if settings.is_sqlite:  # SQLite stores NUL characters like any other
        assert audit.status_code == 200
        assert key.status_code == 201
        return
    # PostgreSQL text cannot hold them: the client is told, and nothing was stored.
    for response in (audit, key):
        body = assert_problem(response, 422)
        assert body["errors"] == [
            {"field": "request", "message": "must not contain NUL (\\u0000) characters"}
        ]
    keys = await client.get("/v1/user/api-keys", headers=account.headers)
    assert keys.json()["data"] == []


# --- malformed requests, routing ----------------------------------------------------------------


@pytest.mark.parametrize("raw", [b'{"email": "a@example.com", ', b"not json at all", b"\xff\xfe"])
async def test_malformed_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/v1/auth/login", content=raw, headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 400)
    assert body["type"].endswith("/malformed-json")
    assert "errors" not in body


async def test_unknown_route_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/does-not-exist")
    body = assert_problem(response, 404)
    assert body["title"] == "Not Found"
    assert body["instance"] == "/v1/does-not-exist"


async def test_wrong_method_is_405(client: httpx.AsyncClient) -> None:
    response = await client.put("/v1/health/live", json={})
    body = assert_problem(response, 405)
    assert body["title"] == "Method Not Allowed"
    assert response.headers["allow"] == "GET"


async def test_missing_credentials_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/user/profile")
    assert_problem(response, 401)
    assert response.headers["www-authenticate"] == "Bearer"


async def test_admin_route_for_a_user_is_403(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get("/v1/admin/audit", headers=account.headers)
    assert_problem(response, 403)


# --- unexpected exceptions ----------------------------------------------------------------------


async def test_unexpected_exception_is_a_generic_500_logged_with_request_id(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    restore_logging: None,
) -> None:
    # Built inside the test so that its log handler writes to the captured stderr.
    app = create_app(make_settings(database_url, tmp_path))

    async def boom() -> dict[str, str]:
        raise RuntimeError("secret internals")

    app.add_api_route("/v1/test/boom", boom, methods=["GET"])
    async with LifespanManager(app), asgi_client(app) as client:
        response = await client.get("/v1/test/boom", headers={"X-Request-ID": "req-boom-1"})

    body = assert_problem(response, 500)
    assert body["title"] == "Internal Server Error"
    assert "secret internals" not in response.text
    assert "RuntimeError" not in response.text
    assert response.headers["x-request-id"] == "req-boom-1"

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    errors = [line for line in lines if line.get("event") == "unhandled_error"]
    assert len(errors) == 1, lines
    logged = errors[0]
    assert logged["request_id"] == "req-boom-1"
    assert logged["level"] == "error"
    assert logged["path"] == "/v1/test/boom"
    # The log, unlike the response, keeps what an operator needs to debug it.
    assert "secret internals" in logged["exception"]


# --- dependencies down ----------------------------------------------------------------------------

UNREACHABLE = {
    "postgres-closed-port": "postgresql+asyncpg://postgres@127.0.0.1:1/agenthub_unreachable",
    # RFC 6761: never resolves, as the name of a database container that is being restarted.
    "postgres-unresolvable-host": "postgresql+asyncpg://postgres@db.invalid:5432/agenthub",
    "sqlite-missing-directory": "sqlite+aiosqlite:///{tmp}/no/such/directory/agenthub.db",
}


def _aiosqlite_workers() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


@pytest.fixture(params=sorted(UNREACHABLE))
async def down_client(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = UNREACHABLE[request.param].format(tmp=tmp_path)
    app = create_app(make_settings(url, tmp_path, db_timeout_seconds=2.0))
    workers_before = _aiosqlite_workers()
    async with LifespanManager(app), asgi_client(app) as client:
        yield client
    # After a failed connect aiosqlite stops its worker thread without waiting for it; let
    # the threads finish while this test's event loop still runs, or they report to a closed one.
    for worker in _aiosqlite_workers() - workers_before:
        await asyncio.to_thread(worker.join, 5)


async def test_database_down_is_503_on_authenticated_route(down_client: httpx.AsyncClient) -> None:
    token, _ = encode_access_token(TEST_SECRET, new_id("usr"), new_id("lgn"), minutes=5)
    response = await down_client.get(
        "/v1/user/profile", headers={"Authorization": f"Bearer {token}"}
    )
    body = assert_problem(response, 503)
    assert body["type"].endswith("/database-unavailable")
    assert int(response.headers["retry-after"]) > 0
    assert "127.0.0.1" not in response.text
    assert "no/such/directory" not in response.text


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/auth/login", {"email": "someone@example.com", "password": "whatever pw"}),
        ("/v1/auth/register", {"email": "someone@example.com", "password": "long enough pw"}),
    ],
)
async def test_database_down_is_503_on_login_and_register(
    down_client: httpx.AsyncClient, path: str, payload: dict[str, str]
) -> None:
    response = await down_client.post(path, json=payload)
    assert_problem(response, 503)
    assert "retry-after" in response.headers


def test_every_address_refused_is_503() -> None:
    """asyncio's single OSError for a host whose every address refused, as `localhost` does
    when PostgreSQL is down on both ::1 and 127.0.0.1."""
    refused = OSError(
        "Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432, 0, 0), "
        "[Errno 111] Connect call failed ('127.0.0.1', 5432)"
    )
    response = render_unexpected(refused)
    assert response.status_code == 503
    assert json.loads(bytes(response.body))["type"].endswith("/database-unavailable")


def test_a_connection_the_pool_discarded_is_503() -> None:
    """A statement on a connection left mid-operation by a cut-off query (asyncpg's
    `InternalClientError`), which the engine reports as a disconnect."""
    stuck = DBAPIError(
        "SELECT 1",
        None,
        RuntimeError("cannot switch to state 12; another operation (2) is in progress"),
        connection_invalidated=True,
    )
    response = render_unexpected(stuck)
    assert response.status_code == 503
    assert json.loads(bytes(response.body))["type"].endswith("/database-unavailable")


def test_a_locked_sqlite_file_from_the_driver_is_503() -> None:
    """sqlite3's own error, as a `db.unit` (no SQLAlchemy around the driver) raises it when
    another process kept the write lock past the busy timeout."""
    response = render_unexpected(sqlite3.OperationalError("database is locked"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"


async def test_database_down_fails_readiness_but_not_liveness(
    down_client: httpx.AsyncClient,
) -> None:
    ready = await down_client.get("/v1/health/ready")
    body = assert_problem(ready, 503)
    assert body["detail"].startswith("database: unreachable")
    assert "127.0.0.1" not in ready.text
    live = await down_client.get("/v1/health/live")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}


async def test_a_pool_with_no_connection_free_is_503(postgres_url: str, tmp_path: Path) -> None:
    """Every pooled connection busy past the pool's timeout (a burst of logins holding theirs)
    is a 503 with Retry-After, not a 500."""
    async with (
        custom_app(
            postgres_url, tmp_path, db_pool_size=1, db_max_overflow=0, db_timeout_seconds=0.3
        ) as app,
        asgi_client(app) as client,
        app.state.database.transaction() as held,
    ):
        await held.execute(text("SELECT 1"))  # the pool's only connection, kept
        response = await client.get("/v1/user/profile", headers={"X-API-Key": "ahk_" + "0" * 40})
    body = assert_problem(response, 503)
    assert body["type"].endswith("/database-unavailable")
    assert "retry-after" in response.headers
