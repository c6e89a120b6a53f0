"""`AgentHubClient` against the in-process app (ASGI transport)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from agenthub.client import AgentHubClient, ApiError, RealtimeClient
from support import Account

BASE = "http://testserver"


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[AgentHubClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with AgentHubClient(BASE, transport=transport) as client:
        yield client


async def test_login_keeps_the_tokens(api: AgentHubClient, account: Account) -> None:
    assert api.token is None
    tokens = await api.login(account.email, account.password)
    assert api.token == tokens["access_token"] and api.refresh_token == tokens["refresh_token"]
    profile = await api.get("/v1/user/profile")
    assert profile["id"] == account.id


async def test_non_2xx_raises_api_error_with_the_problem(
    api: AgentHubClient, account: Account
) -> None:
    with pytest.raises(ApiError) as failed:
        await api.login(account.email, "wrong password")
    assert failed.value.status == 401 and failed.value.problem["status"] == 401
    assert api.token is None

    api.token = account.access_token
    with pytest.raises(ApiError) as missing:
        await api.get("/v1/projects/prj_doesnotexist")
    problem = missing.value.problem
    assert missing.value.status == 404 and problem["status"] == 404
    assert problem["type"].startswith("https://") and problem["title"] == missing.value.title

    with pytest.raises(ApiError) as invalid:
        await api.post("/v1/projects", json={"name": ""})
    assert invalid.value.status == 422 and invalid.value.problem["errors"]


async def test_an_unauthenticated_call_without_refresh_token_is_401(api: AgentHubClient) -> None:
    with pytest.raises(ApiError) as failed:
        await api.get("/v1/user/profile")
    assert failed.value.status == 401


async def test_a_401_refreshes_once_and_retries(app: FastAPI, account: Account) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with AgentHubClient(
        BASE, token="not-a-valid-jwt", refresh_token=account.refresh_token, transport=transport
    ) as api:
        # concurrent 401s share one refresh: a second use of the rotated refresh token
        # would revoke the whole login and fail the others
        profiles = await asyncio.gather(*(api.get("/v1/user/profile") for _ in range(3)))
        assert [p["id"] for p in profiles] == [account.id] * 3
        assert api.token not in (None, "not-a-valid-jwt")
        assert api.refresh_token not in (None, account.refresh_token)
        assert (await api.get("/v1/user/profile"))["id"] == account.id


async def test_a_failed_refresh_raises_the_original_401(app: FastAPI, account: Account) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with AgentHubClient(
        BASE, token="not-a-valid-jwt", refresh_token="bogus", transport=transport
    ) as api:
        with pytest.raises(ApiError) as failed:
            await api.get("/v1/user/profile")
        assert failed.value.status == 401
        assert api.refresh_token is None


async def test_paginate_follows_next_cursor(api: AgentHubClient, account: Account) -> None:
    await api.login(account.email, account.password)
    created = [(await api.post("/v1/projects", json={"name": f"p{i}"}))["id"] for i in range(5)]
    seen = [item["id"] async for item in api.paginate("/v1/projects", {"limit": 2})]
    assert sorted(seen) == sorted(created) and len(seen) == 5
    assert [p async for p in api.paginate("/v1/projects", {"limit": 2, "q": "nothing"})] == []


async def test_delete_returns_none_and_an_injected_client_stays_open(
    app: FastAPI, account: Account
) -> None:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
        async with AgentHubClient(BASE, token=account.access_token, http_client=http) as api:
            project = await api.post("/v1/projects", json={"name": "gone soon"})
            assert await api.delete(f"/v1/projects/{project['id']}") is None
        assert not http.is_closed


def test_realtime_is_bound_to_the_same_server() -> None:
    realtime = AgentHubClient("https://api.example.com/prefix/", token="t").realtime()
    assert isinstance(realtime, RealtimeClient)
    assert realtime.url == "wss://api.example.com/prefix/v1/ws"
