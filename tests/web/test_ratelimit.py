"""Rate limits per route group (docs/api.md), per user and per client IP, through the HTTP API:
`RateLimit-*` headers, 429 problems with `Retry-After`, the `rate_limited_total` metric, the
WebSocket handshake limit and the settings. SQLite apps count in memory, PostgreSQL apps in
Redis (a key prefix of this module's own, deleted after each test).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agenthub.config import Settings
from conftest import Deployment, asgi_client, custom_app
from realtime_support import drop_prefix, receive, redis_url, require_redis, sign_up
from support import Account, assert_problem, register

AppFactory = Callable[..., AbstractAsyncContextManager[FastAPI]]
# Documentation addresses (RFC 5737): only ever the client address of an in-process request.
FAR_IP, OTHER_IP, THIRD_IP = "203.0.113.7", "198.51.100.9", "192.0.2.44"
RATE_LIMIT_HEADERS = (
    "ratelimit-limit",
    "ratelimit-remaining",
    "ratelimit-reset",
    "ratelimit-policy",
)


@pytest.fixture(scope="module")
def redis_prefix() -> str:
    return f"test-ratelimit-{secrets.token_hex(4)}"


@pytest.fixture
def limited_app(database_url: str, tmp_path: Path, redis_prefix: str) -> Iterator[AppFactory]:
    """`custom_app` with other limits: on SQLite counted in memory, on PostgreSQL in Redis
    (no job worker: nothing here runs jobs)."""
    backend: dict[str, Any] = {"worker_enabled": False}
    if database_url.startswith("postgresql"):
        require_redis()
        backend.update(redis_url=redis_url(), redis_prefix=redis_prefix)
    yield lambda **limits: custom_app(database_url, tmp_path, **backend, **limits)
    if "redis_url" in backend:
        drop_prefix(redis_prefix)


async def new_account(client: httpx.AsyncClient) -> Account:
    return await register(client, f"rl-{secrets.token_hex(4)}@example.com")


def quota(response: httpx.Response) -> tuple[int, int]:
    """(`RateLimit-Limit`, `RateLimit-Remaining`) of a response."""
    return int(response.headers["RateLimit-Limit"]), int(response.headers["RateLimit-Remaining"])


async def refused_count(client: httpx.AsyncClient, group: str) -> float:
    """`rate_limited_total{group=...}` as `/metrics` shows it."""
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "rate_limited_total" and sample.labels == {"group": group}:
                return sample.value
    return 0.0


async def test_headers_count_down_then_429_with_retry_after(
    limited_app: AppFactory, redis_prefix: str
) -> None:
    origin = "https://app.example"
    async with (
        limited_app(rate_limit_user="5/minute", cors_origins=[origin]) as app,
        asgi_client(app) as client,
    ):
        account = await new_account(client)
        headers = {**account.headers, "Origin": origin}
        before = await refused_count(client, "projects")
        remaining = []
        for _ in range(5):
            response = await client.get("/v1/projects", headers=headers)
            assert response.status_code == 200, response.text
            assert response.headers["RateLimit-Policy"] == "5;w=60"
            assert 0 < int(response.headers["RateLimit-Reset"]) <= 60
            limit, left = quota(response)
            assert limit == 5
            remaining.append(left)
        assert remaining == [4, 3, 2, 1, 0]
        exposed = response.headers["Access-Control-Expose-Headers"].lower()
        assert all(name in exposed for name in (*RATE_LIMIT_HEADERS, "retry-after"))

        refused = await client.get("/v1/projects", headers=headers)
        body = assert_problem(refused, 429)
        assert body["type"].endswith("/rate-limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert quota(refused) == (5, 0)
        assert refused.headers["Access-Control-Allow-Origin"] == origin
        assert await refused_count(client, "projects") == before + 1

        state = app.state.limiter.state()
        assert (state.backend, state.active) == (
            ("redis", "redis") if app.state.settings.redis_url else ("memory", "memory")
        )
    if state.backend == "redis":  # the counters are shared by every node of the deployment
        keys = redis.Redis.from_url(redis_url()).keys(f"{redis_prefix}:ratelimit:*")
        assert any(b"/user/" in key and b"/projects" in key for key in keys), keys


async def test_users_and_route_groups_have_their_own_budgets(limited_app: AppFactory) -> None:
    async with (
        limited_app(rate_limit_user="3/minute", rate_limits={"agents": "2/minute"}) as app,
        asgi_client(app) as client,
    ):
        first, second = await new_account(client), await new_account(client)
        for _ in range(3):
            assert (await client.get("/v1/projects", headers=first.headers)).status_code == 200
        assert_problem(await client.get("/v1/projects", headers=first.headers), 429)

        # Another user on the same address, and the same user on another group, are untouched.
        other_user = await client.get("/v1/projects", headers=second.headers)
        assert other_user.status_code == 200 and quota(other_user) == (3, 2)
        other_group = await client.get("/v1/sessions", headers=first.headers)
        assert other_group.status_code == 200 and quota(other_group) == (3, 2)

        # AGENTHUB_RATE_LIMITS overrides the per-user limit of one group.
        agents = [await client.get("/v1/agents", headers=first.headers) for _ in range(3)]
        assert [r.status_code for r in agents] == [200, 200, 429]
        assert [quota(r) for r in agents] == [(2, 1), (2, 0), (2, 0)]
        assert agents[0].headers["RateLimit-Policy"] == "2;w=60"


async def test_client_ip_limit_covers_anonymous_and_signed_in_callers(
    limited_app: AppFactory,
) -> None:
    async with limited_app(rate_limit_ip="3/minute", rate_limit_user="100/minute") as app:
        async with asgi_client(app, client_ip=FAR_IP) as far:
            anonymous = [await far.get("/v1/projects") for _ in range(4)]
            assert [r.status_code for r in anonymous] == [401, 401, 401, 429]
            assert [quota(r) for r in anonymous] == [(3, 2), (3, 1), (3, 0), (3, 0)]
            assert_problem(anonymous[-1], 429)
            assert int(anonymous[-1].headers["Retry-After"]) >= 1
        async with asgi_client(app, client_ip=OTHER_IP) as other:
            fresh = await other.get("/v1/projects")
            assert fresh.status_code == 401 and quota(fresh) == (3, 2)
        async with asgi_client(app, client_ip=THIRD_IP) as third:
            account = await new_account(third)  # two calls in `auth`, none in `projects`
            signed_in = await third.get("/v1/projects", headers=account.headers)
            # The tighter of the two limits is reported: the address's 3, not the user's 100.
            assert signed_in.status_code == 200 and quota(signed_in) == (3, 2)
            login = await third.post(
                "/v1/auth/login", json={"email": account.email, "password": account.password}
            )
            assert login.status_code == 200 and quota(login) == (3, 0)
            assert_problem(
                await third.post(
                    "/v1/auth/login", json={"email": account.email, "password": account.password}
                ),
                429,
            )


async def test_probes_metrics_and_documents_are_never_limited(limited_app: AppFactory) -> None:
    async with limited_app(rate_limit_ip="2/minute") as app, asgi_client(app) as client:
        for path in ("/v1/health/live", "/v1/health/ready", "/v1/health", "/metrics"):
            for _ in range(3):
                response = await client.get(path)
                assert response.status_code == 200, (path, response.text)
                assert "ratelimit-limit" not in response.headers, path
        for path in ("/openapi.json", "/docs"):
            for _ in range(3):
                assert (await client.get(path)).status_code == 200, path
        # Unknown paths under /v1 share one group: made-up paths cannot multiply counters.
        misses = [await client.get(f"/v1/nothing-{n}") for n in range(3)]
        assert [r.status_code for r in misses] == [404, 404, 429]


async def test_event_stream_counts_against_the_user_limit(limited_app: AppFactory) -> None:
    async with (
        limited_app(rate_limits={"events": "1/minute"}) as app,
        asgi_client(app) as client,
    ):
        account = await new_account(client)
        # `?token=` (browsers' EventSource) authenticates like the Authorization header.
        params = {"channel": "not a channel", "token": account.access_token}
        invalid = await client.get("/v1/events", params=params)
        assert invalid.status_code == 422 and quota(invalid) == (1, 0)
        assert_problem(await client.get("/v1/events", params=params), 429)


async def test_disabled_limits_send_no_headers(limited_app: AppFactory) -> None:
    async with (
        limited_app(rate_limit_enabled=False, rate_limit_ip="1/minute") as app,
        asgi_client(app) as client,
    ):
        for _ in range(3):
            response = await client.get("/v1/projects")
            assert response.status_code == 401
            assert "ratelimit-limit" not in response.headers


def test_limits_come_from_the_environment_and_are_checked_at_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTHUB_RATE_LIMITS", "files=120/minute, generate = 30 per 2 minutes")
    monkeypatch.setenv("AGENTHUB_RATE_LIMIT_IP", "600/minute")
    settings = Settings(_env_file=None)
    assert settings.rate_limits == {"files": "120/minute", "generate": "30 per 2 minutes"}
    assert (settings.rate_limit_ip, settings.rate_limit_user) == ("600/minute", "1200/minute")
    for name, value in (
        ("AGENTHUB_RATE_LIMITS", "files=lots"),
        ("AGENTHUB_RATE_LIMITS", "files"),
        ("AGENTHUB_RATE_LIMIT_USER", "5/minute;100/hour"),
        ("AGENTHUB_WS_CONNECT_LIMIT", "0/minute"),
    ):
        with monkeypatch.context() as env:
            env.setenv(name, value)
            with pytest.raises(ValidationError) as raised:
                Settings(_env_file=None)
            assert name.removeprefix("AGENTHUB_").lower() in str(raised.value)


@pytest.fixture(scope="module")
def connect_limited(deployment: Deployment) -> Iterator[str]:
    """A node that takes 3 WebSocket handshakes a minute per client address."""
    with deployment.node(AGENTHUB_WS_CONNECT_LIMIT="3/minute") as node:
        yield node.http


@pytest.mark.slow
async def test_websocket_handshakes_over_the_limit_close_with_4429(connect_limited: str) -> None:
    account = await sign_up(connect_limited)
    url = connect_limited.replace("http://", "ws://") + f"/v1/ws?token={account.access_token}"
    for _ in range(3):
        async with connect(url, open_timeout=10) as ws:
            assert (await receive(ws))["type"] == "connected"
    async with connect(url, open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    async with httpx.AsyncClient(base_url=connect_limited) as client:
        assert await refused_count(client, "ws") >= 1


async def failed_logins(base: str, forwarded_for: list[str]) -> list[int]:
    """The statuses of failed logins from 127.0.0.1, each claiming to be forwarded for the
    next address."""
    statuses = []
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        for address in forwarded_for:
            response = await client.post(
                "/v1/auth/login",
                json={"email": "nobody@example.com", "password": "not the password"},
                headers={"X-Forwarded-For": address},
            )
            statuses.append(response.status_code)
    return statuses


@pytest.mark.slow
async def test_forwarded_for_counts_only_from_a_trusted_proxy(deployment: Deployment) -> None:
    """By default a local client rotating X-Forwarded-For stays one address to the per-IP
    login limit; `--forwarded-allow-ips` makes the named proxy's header the client address."""
    rotating = [f"{FAR_IP[:-1]}{n}" for n in range(1, 6)]
    with deployment.node(AGENTHUB_LOGIN_LIMIT_IP="3/minute") as node:
        assert await failed_logins(node.http, rotating) == [401, 401, 401, 429, 429]
    trusting = ("--forwarded-allow-ips", "127.0.0.1")
    with deployment.node(*trusting, AGENTHUB_LOGIN_LIMIT_IP="3/minute") as node:
        assert await failed_logins(node.http, rotating) == [401] * 5
        assert await failed_logins(node.http, [OTHER_IP] * 4) == [401, 401, 401, 429]


def test_trusted_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).forwarded_allow_ips == []
    monkeypatch.setenv("AGENTHUB_FORWARDED_ALLOW_IPS", "10.0.0.5, 10.1.0.0/16,::1")
    assert Settings(_env_file=None).forwarded_allow_ips == ["10.0.0.5", "10.1.0.0/16", "::1"]
    monkeypatch.setenv("AGENTHUB_FORWARDED_ALLOW_IPS", "10.0.0.5,*")
    assert Settings(_env_file=None).forwarded_allow_ips == ["*"]
    for value in ("proxy.internal", "10.0.0.1/8"):
        monkeypatch.setenv("AGENTHUB_FORWARDED_ALLOW_IPS", value)
        with pytest.raises(ValidationError, match="is not an IP address or network"):
            Settings(_env_file=None)
