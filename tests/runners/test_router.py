"""`GET /v1/runners/health` through the API, against a loopback OpenAI-compatible server and
the `llm_cli.py` stand-in."""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from agenthub.runners.base import ChatMessage, RunnerError, RunRequest
from agenthub.runners.registry import Runners
from conftest import asgi_client, custom_app
from runners.llm_cli import VERSION, install
from runners.openai_server import SERVER_VERSION, OpenAIServer
from support import Account, assert_problem, register

URL = "/v1/runners/health"


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


async def health(client: httpx.AsyncClient, account: Account) -> dict[str, dict[str, Any]]:
    response = await client.get(URL, headers=account.headers)
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()["data"]}


async def test_requires_a_signed_in_user(client: httpx.AsyncClient) -> None:
    response = await client.get(URL)
    assert_problem(response, 401)


async def test_default_settings_report_echo_only(
    client: httpx.AsyncClient, account: Account
) -> None:
    report = await health(client, account)

    assert list(report) == ["openai", "cli", "echo"]
    assert report["echo"]["configured"] is True
    assert report["echo"]["reachable"] is True
    assert report["echo"]["breaker"] == "closed"
    for name in ("openai", "cli"):
        assert (report[name]["configured"], report[name]["reachable"]) == (False, False)
        assert report[name]["detail"] == "not configured"


async def test_configured_runners_report_reachability_and_versions(
    database_url: str, tmp_path: Path, server: OpenAIServer
) -> None:
    settings = {
        "openai_base_url": server.base_url,
        "openai_api_key": "sk-router-test-secret",
        "cli_command": shlex.quote(str(install(tmp_path))) + " --quiet",
    }
    async with custom_app(database_url, tmp_path, **settings) as app, asgi_client(app) as client:
        account = await register(client, "runners@example.com")
        response = await client.get(URL, headers=account.headers)
        report = {item["name"]: item for item in response.json()["data"]}

    assert "sk-router-test-secret" not in response.text
    assert report["openai"]["reachable"] is True
    assert report["openai"]["version"] == SERVER_VERSION
    assert report["openai"]["latency_ms"] > 0
    assert report["cli"]["reachable"] is True
    assert report["cli"]["version"] == VERSION
    assert report["cli"]["latency_ms"] > 0
    assert [r.path for r in server.requests] == ["/v1/models"]


async def test_an_unreachable_runner_is_reported_as_such(database_url: str, tmp_path: Path) -> None:
    async with (
        custom_app(database_url, tmp_path, cli_command="/nonexistent/llm") as app,
        asgi_client(app) as client,
    ):
        account = await register(client, "missing-cli@example.com")
        report = await health(client, account)

    assert (report["cli"]["configured"], report["cli"]["reachable"]) == (True, False)
    assert "not found" in report["cli"]["detail"]


async def test_the_breaker_state_is_shown(database_url: str, tmp_path: Path) -> None:
    async with (
        custom_app(database_url, tmp_path, runner_breaker_failures=2) as app,
        asgi_client(app) as client,
    ):
        account = await register(client, "breaker@example.com")
        await open_echo_breaker(app)
        report = await health(client, account)

    assert report["echo"]["breaker"] == "open"
    assert report["echo"]["reachable"] is True  # the backend is fine; runs fail fast for now


async def open_echo_breaker(app: FastAPI) -> None:
    runners: Runners = app.state.runners
    failing = RunRequest([ChatMessage("user", "x")], options={"fail_first": 99})

    async def ignore(_: str) -> None:
        return None

    for _ in range(2):
        with pytest.raises(RunnerError):
            await runners.get("echo").run(failing, ignore)
