"""Request context headers, security headers, CORS allow-list and the request body limit."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import asgi_client, custom_app
from support import PASSWORD, assert_problem

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
ALLOWED_ORIGIN = "https://app.example"
OTHER_ORIGIN = "https://evil.example"


@pytest.fixture
async def custom_client(database_url: str, tmp_path: Path) -> Any:
    """A client factory for apps built with setting overrides; tables are emptied afterwards."""
    async with AsyncExitStack() as apps:

        async def build(**overrides: Any) -> httpx.AsyncClient:
            app = await apps.enter_async_context(custom_app(database_url, tmp_path, **overrides))
            return asgi_client(app)

        yield build


# --- request id, timing, security headers -------------------------------------------------------


@pytest.mark.parametrize("request_id", ["abc-123", "a.b:c_d-e", "7" * 128])
async def test_valid_request_id_is_echoed(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get("/v1/health/live", headers={"X-Request-ID": request_id})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == request_id


async def test_request_id_is_generated_when_absent(client: httpx.AsyncClient) -> None:
    first = await client.get("/v1/health/live")
    second = await client.get("/v1/health/live")
    assert GENERATED_ID.match(first.headers["x-request-id"])
    assert GENERATED_ID.match(second.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize(
    "request_id", ["has spaces", "x" * 129, "semi;colon", "new\tline", "<script>", "ünïcode"]
)
async def test_invalid_request_id_is_replaced(client: httpx.AsyncClient, request_id: str) -> None:
    response = await client.get(
        "/v1/health/live", headers={b"X-Request-ID": request_id.encode("utf-8")}
    )
    assert response.status_code == 200
    assert GENERATED_ID.match(response.headers["x-request-id"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/health/live", 200),
        ("GET", "/v1/nowhere", 404),
        ("GET", "/v1/user/profile", 401),
        ("DELETE", "/v1/health/live", 405),
        ("POST", "/v1/auth/login", 422),
    ],
)
async def test_every_response_carries_context_and_security_headers(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path, headers={"X-Request-ID": "ctx-1"})
    assert response.status_code == status
    assert response.headers["x-request-id"] == "ctx-1"
    elapsed = float(response.headers["x-process-time"])
    assert 0 <= elapsed < 60
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    policy = response.headers["content-security-policy"]
    assert policy == "default-src 'none'; frame-ancestors 'none'"


# --- CORS ---------------------------------------------------------------------------------------


def _preflight(origin: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }


async def test_no_cors_origins_means_no_cross_origin_access(client: httpx.AsyncClient) -> None:
    simple = await client.get("/v1/health/live", headers={"Origin": ALLOWED_ORIGIN})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers
    preflight = await client.options("/v1/user/profile", headers=_preflight(ALLOWED_ORIGIN))
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-credentials" not in preflight.headers
    assert preflight.status_code == 405


async def test_allowed_origin_passes_preflight_and_simple_requests(custom_client: Any) -> None:
    async with await custom_client(cors_origins=[ALLOWED_ORIGIN]) as client:
        preflight = await client.options("/v1/user/profile", headers=_preflight(ALLOWED_ORIGIN))
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        assert preflight.headers["access-control-allow-credentials"] == "true"
        assert "GET" in preflight.headers["access-control-allow-methods"]
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()

        simple = await client.get("/v1/health/live", headers={"Origin": ALLOWED_ORIGIN})
        assert simple.status_code == 200
        assert simple.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        exposed = simple.headers["access-control-expose-headers"].lower()
        assert "x-request-id" in exposed
        assert "x-process-time" in exposed


async def test_other_origin_is_refused(custom_client: Any) -> None:
    async with await custom_client(cors_origins=[ALLOWED_ORIGIN]) as client:
        preflight = await client.options("/v1/user/profile", headers=_preflight(OTHER_ORIGIN))
        assert preflight.status_code == 400
        assert "access-control-allow-origin" not in preflight.headers

        simple = await client.get("/v1/health/live", headers={"Origin": OTHER_ORIGIN})
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers


# --- body limit ---------------------------------------------------------------------------------

LIMIT = 1024


def _register_body(padding: int) -> bytes:
    email = f"user-{secrets.token_hex(4)}@example.com"
    body: dict[str, Any] = {"email": email, "password": PASSWORD}
    if padding:
        body["username"] = "u" * padding
    return json.dumps(body).encode()


async def _chunks(data: bytes, size: int = 100) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _assert_413(response: httpx.Response) -> None:
    problem = assert_problem(response, 413)
    assert problem["type"].endswith("/payload-too-large")
    assert str(LIMIT) in problem["detail"]


async def test_declared_body_over_limit_is_413(custom_client: Any) -> None:
    async with await custom_client(max_body_bytes=LIMIT) as client:
        body = _register_body(2 * LIMIT)
        response = await client.post(
            "/v1/auth/register", content=body, headers={"Content-Type": "application/json"}
        )
        _assert_413(response)
        assert response.headers["x-request-id"]
        # Nothing was created: the same email can still register normally.
        email = json.loads(body)["email"]
        created = await client.post(
            "/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text


async def test_streamed_body_over_limit_is_413(custom_client: Any) -> None:
    async with await custom_client(max_body_bytes=LIMIT) as client:
        body = _register_body(2 * LIMIT)
        request = client.build_request(
            "POST",
            "/v1/auth/register",
            content=_chunks(body),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        response = await client.send(request)
        _assert_413(response)
        email = json.loads(body)["email"]
        login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 401  # the account was never created


async def test_bodies_under_limit_pass(custom_client: Any) -> None:
    async with await custom_client(max_body_bytes=LIMIT) as client:
        declared = _register_body(40)
        assert len(declared) < LIMIT
        response = await client.post(
            "/v1/auth/register", content=declared, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 201, response.text

        streamed = _register_body(40)
        response = await client.post(
            "/v1/auth/register",
            content=_chunks(streamed, size=16),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 201, response.text
        assert response.json()["email"] == json.loads(streamed)["email"]


# --- slow requests --------------------------------------------------------------------------------


async def test_slow_requests_are_logged_as_warnings(
    custom_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with await custom_client(slow_request_seconds=0) as client:
        logging.getLogger().addHandler(caplog.handler)  # the app replaced the root handlers
        response = await client.get("/v1/sessions")
    records = [r for r in caplog.records if r.name == "agenthub.http"]
    slow = [r.msg for r in records if r.levelname == "WARNING"]
    assert any(
        isinstance(m, dict)
        and m["event"] == "slow_request"
        and m["route"] == "/v1/sessions"
        and m["status"] == 401
        and m["request_id"] == response.headers["x-request-id"]
        for m in slow
    ), slow


async def test_fast_requests_are_logged_at_info(
    custom_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with await custom_client(slow_request_seconds=60, log_level="INFO") as client:
        logging.getLogger().addHandler(caplog.handler)  # the app replaced the root handlers
        response = await client.get("/v1/sessions")
    levels = {
        r.levelname
        for r in caplog.records
        if r.name == "agenthub.http"
        and isinstance(r.msg, dict)
        and r.msg.get("request_id") == response.headers["x-request-id"]
    }
    assert levels == {"INFO"}
