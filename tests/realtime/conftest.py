"""Realtime tests drive real `agenthub serve` processes with a real WebSocket client, once per
backend: SQLite with the in-process broker, and PostgreSQL with Redis."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import TEST_SECRET
from processes import Server, clean_env, server_process
from realtime_support import drop_prefix, redis_url, require_redis


@dataclass
class Deployment:
    """What the nodes of one deployment share: database, broker and settings."""

    backend: str
    workdir: Path
    env: dict[str, str]

    def node(self, *extra: str, **settings: str) -> AbstractContextManager[Server]:
        """Start one more `agenthub serve` node of this deployment (`settings` are extra
        AGENTHUB_* variables, e.g. `AGENTHUB_HEARTBEAT_INTERVAL="0.5"`)."""
        return server_process(self.workdir, {**self.env, **settings}, *extra)


@pytest.fixture(scope="module", params=("memory", "redis"))
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    workdir = tmp_path_factory.mktemp("realtime")
    env = clean_env(
        AGENTHUB_SECRET_KEY=TEST_SECRET,
        AGENTHUB_AUTO_MIGRATE="false",
        AGENTHUB_LOG_LEVEL="WARNING",
        AGENTHUB_FILES_DIR=str(workdir / "files"),
        AGENTHUB_LOGIN_LIMIT_IP="10000/minute",
        AGENTHUB_LOGIN_LIMIT_ACCOUNT="10000/minute",
    )
    if request.param == "memory":
        env["AGENTHUB_DATABASE_URL"] = request.getfixturevalue("sqlite_url")
        yield Deployment("memory", workdir, env)
        return
    require_redis()
    prefix = f"test{secrets.token_hex(4)}"
    env["AGENTHUB_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    env["AGENTHUB_REDIS_URL"] = redis_url()
    env["AGENTHUB_REDIS_PREFIX"] = prefix
    try:
        yield Deployment("redis", workdir, env)
    finally:
        drop_prefix(prefix)


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[Server]:
    """One node with default settings, shared by the tests of a module."""
    with deployment.node() as node:
        yield node
