"""Every API test runs twice: on SQLite and on PostgreSQL, each built with `alembic upgrade head`.
Tests of real server processes run on a `deployment`: SQLite with the in-process broker, or
PostgreSQL with Redis.

PostgreSQL gets a fresh database per test run (dropped at the end). Between tests every table
is emptied, so each test starts from a clean, migrated schema. When `CI` is set and PostgreSQL
is unreachable the run fails instead of skipping.

A test fails if it leaks: a thread or (in an async test) an asyncio task still running after
its fixtures are torn down, or an error logged by asyncio ("Task was destroyed but it is
pending!", "Task exception was never retrieved"). Its garbage is collected at teardown, so an
unclosed resource or a coroutine never awaited is reported there too (`filterwarnings` in
pyproject.toml makes those warnings errors).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AbstractContextManager,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from agenthub.app import create_app
from agenthub.auth import service
from agenthub.config import Settings
from agenthub.db import migrate
from agenthub.db.models import Base
from processes import Server, clean_env, server_process
from realtime_support import drop_prefix, redis_url, require_redis
from support import PASSWORD, Account, register

PG_ADMIN_DSN = os.environ.get(
    "AGENTHUB_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BACKENDS = ("sqlite", "postgres")
TEST_SECRET = "test-signing-key-" + "x" * 32


THREAD_EXIT_SECONDS = 5.0
TASK_EXIT_SECONDS = 1.0


class _Records(logging.Handler):
    """The errors asyncio logs while a test runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_THREADS = pytest.StashKey[set[threading.Thread]]()
_RECORDS = pytest.StashKey[_Records]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup` (`make test`), the tests of a module that share a
    module-scoped fixture (a server process) run on one xdist worker, so that server starts
    once instead of once per worker."""
    for item in items:
        if isinstance(item, pytest.Function) and _shares_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def _shares_module_fixture(item: pytest.Function) -> bool:
    definitions = item._fixtureinfo.name2fixturedefs.values()
    return any(chain[-1].scope in ("module", "package") for chain in definitions)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    item.stash[_THREADS] = set(threading.enumerate())
    item.stash[_RECORDS] = records = _Records()
    logging.getLogger("asyncio").addHandler(records)
    return (yield)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the test's fixtures (and event loop) are gone: fail it if asyncio logged an error
    or a thread it started is still running. Its garbage is collected first, so a pending
    task's `__del__` logs and an unclosed resource warns here, not in a later test."""
    yield
    if nextitem is None or nextitem.path != item.path:
        gc.unfreeze()  # the module's fixtures are gone too: examine everything
    gc.collect()
    gc.freeze()  # survivors are not examined again before the module ends: collections stay cheap
    records = item.stash[_RECORDS]
    logging.getLogger("asyncio").removeHandler(records)
    assert not records.messages, f"asyncio logged errors during the test: {records.messages}"
    kept = tuple(name for mark in item.iter_markers("keeps_threads") for name in mark.args)
    left = _left_running(item.stash[_THREADS], kept)
    assert not left, f"threads left running after the test: {left}"


def _left_running(before: set[threading.Thread], kept: tuple[str, ...]) -> list[threading.Thread]:
    """Threads started since `before`, unless named with a `kept` prefix, that do not end
    within `THREAD_EXIT_SECONDS`."""
    started = [t for t in set(threading.enumerate()) - before if not t.name.startswith(kept)]
    deadline = time.monotonic() + THREAD_EXIT_SECONDS
    for thread in started:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t for t in started if t.is_alive()]


@pytest.fixture(autouse=True)
def _no_pending_tasks(request: pytest.FixtureRequest) -> None:
    """An async test gets `no_pending_tasks` before any other fixture, so it is torn down last."""
    if inspect.iscoroutinefunction(request.function):
        request.getfixturevalue("no_pending_tasks")


@pytest.fixture
async def no_pending_tasks() -> AsyncIterator[None]:
    """Fail the async test whose tasks outlive its fixtures (its loop would cancel them)."""
    yield
    ending = asyncio.all_tasks() - {asyncio.current_task()}
    if ending:  # e.g. cancelled during teardown, or closing a collected async generator
        _, pending = await asyncio.wait(ending, timeout=TASK_EXIT_SECONDS)
    else:
        pending = set()
    described = [repr(task) for task in pending]
    for task in pending:
        task.cancel()
    assert not described, f"tasks left running after the test: {described}"


def _pg_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _pg_admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def fresh_postgres(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards. Skips the test when
    PostgreSQL is unreachable (fails it when `CI` is set)."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    try:
        yield _pg_url(PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}")
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this run, migrated to head."""
    with fresh_postgres("agenthub_test") as url:
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite file for this run, migrated to head."""
    path = tmp_path_factory.mktemp("db") / "agenthub.db"
    url = f"sqlite+aiosqlite:///{path}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def make_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "environment": "test",
        "log_format": "json",
        "log_level": "WARNING",
        "password_time_cost": 1,
        "password_memory_kib": 1024,
        "cookie_secure": False,
        "files_dir": tmp_path / "files",
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path)


async def empty_tables(app: FastAPI) -> None:
    """Delete every row, dependents first (a test leaves few: far cheaper than a TRUNCATE,
    which costs PostgreSQL a quarter of a second)."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    async with app.state.database.transaction() as db:
        for table in tables:
            await db.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - our own names


@asynccontextmanager
async def started(application: FastAPI) -> AsyncIterator[FastAPI]:
    """The app, started; its tables are emptied afterwards."""
    async with LifespanManager(application):
        try:
            yield application
        finally:
            if application.state.worker is not None:
                await application.state.worker.stop(grace=0)  # no job writes while emptying
            await empty_tables(application)


def running_app(settings: Settings) -> AbstractAsyncContextManager[FastAPI]:
    """The app built with these settings, started; its tables are emptied afterwards."""
    return started(create_app(settings))


def custom_app(
    database_url: str, tmp_path: Path, **overrides: Any
) -> AbstractAsyncContextManager[FastAPI]:
    """An app on the test database with other settings; its tables are emptied afterwards."""
    return running_app(make_settings(database_url, tmp_path, **overrides))


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running_app(settings) as application:
        yield application


def asgi_client(app: FastAPI, client_ip: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(client_ip, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as c:
        yield c


AccountFactory = Callable[..., Awaitable[Account]]


@pytest.fixture
def make_account(client: httpx.AsyncClient) -> AccountFactory:
    """Register and log in a new user (`make_account()`, `make_account(email=...)`)."""

    async def make(email: str | None = None, password: str = PASSWORD) -> Account:
        return await register(client, email or f"user-{secrets.token_hex(4)}@example.com", password)

    return make


@pytest.fixture
async def account(make_account: AccountFactory) -> Account:
    return await make_account()


async def login_admin(app: FastAPI, client: httpx.AsyncClient) -> Account:
    """Create an administrator (as `agenthub user create --admin` does) and log in."""
    email = f"admin-{secrets.token_hex(4)}@example.com"
    async with app.state.database.transaction() as db:
        user = await service.create_user(
            db, app.state.hasher, email=email, password=PASSWORD, is_admin=True
        )
    login = await client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    tokens = login.json()
    return Account(user.id, email, PASSWORD, tokens["access_token"], tokens["refresh_token"])


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> Account:
    """A logged-in administrator."""
    return await login_admin(app, client)


@dataclass
class Deployment:
    """What the nodes of one deployment share: database, broker and settings."""

    backend: str
    workdir: Path
    env: dict[str, str]

    def node(
        self, *extra: str, port: int | None = None, **settings: str
    ) -> AbstractContextManager[Server]:
        """Start one more `agenthub serve` node of this deployment (`settings` are extra
        AGENTHUB_* variables, e.g. `AGENTHUB_HEARTBEAT_INTERVAL="0.5"`)."""
        return server_process(self.workdir, {**self.env, **settings}, *extra, port=port)


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
        AGENTHUB_RATE_LIMIT_USER="100000/minute",
        AGENTHUB_RATE_LIMIT_IP="100000/minute",
        AGENTHUB_WS_CONNECT_LIMIT="10000/minute",
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


@pytest.fixture
async def api(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the module's `server` process."""
    async with httpx.AsyncClient(base_url=server.http, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[Server]:
    """One node with default settings, shared by the tests of a module."""
    with deployment.node() as node:
        yield node
