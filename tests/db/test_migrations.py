"""Alembic revisions: upgrade, downgrade to base and upgrade again; no drift from the models.

Each test gets its own fresh database on both backends: a new SQLite file and a new PostgreSQL
database (created and dropped here), never the session databases the API tests share.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from asgi_lifespan import LifespanManager
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agenthub.app import create_app
from agenthub.db import migrate
from agenthub.db.models import Base
from conftest import PG_ADMIN_DSN, asgi_client, make_settings

MODEL_TABLES = set(Base.metadata.tables)


async def _pg_admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database that no migration has touched."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    name = f"agenthub_mig_{os.getpid()}_{secrets.token_hex(3)}"
    try:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    try:
        yield (
            PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
            + f"/{name}"
        )
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _on_connection(url: str, inspect_fn: Any) -> Any:
    """Run `inspect_fn(sync_connection)` on a fresh engine for `url`."""

    async def run() -> Any:
        engine = create_async_engine(url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(inspect_fn)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


def _revision(connection: Connection) -> str | None:
    return migrate.current_revision(connection)


def _drift(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={"compare_type": True, "compare_server_default": False},
    )
    return list(compare_metadata(context, Base.metadata))


def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    assert _on_connection(fresh_url, _tables) == set()

    migrate.upgrade(fresh_url)
    assert _on_connection(fresh_url, _tables) == MODEL_TABLES | {"alembic_version"}
    assert _on_connection(fresh_url, _revision) == migrate.head_revision()

    migrate.downgrade(fresh_url, "base")
    assert _on_connection(fresh_url, _tables) <= {"alembic_version"}
    assert _on_connection(fresh_url, _revision) is None

    migrate.upgrade(fresh_url)
    assert _on_connection(fresh_url, _tables) == MODEL_TABLES | {"alembic_version"}
    assert _on_connection(fresh_url, _revision) == migrate.head_revision()


def test_upgrade_is_idempotent(fresh_url: str) -> None:
    migrate.upgrade(fresh_url)
    migrate.upgrade(fresh_url)
    assert _on_connection(fresh_url, _revision) == migrate.head_revision()


def test_migrations_match_the_models(fresh_url: str) -> None:
    """`alembic revision --autogenerate` would find nothing to do after `upgrade head`."""
    # The comparison sees the models: on an empty database every table is missing.
    missing = {diff[1].name for diff in _on_connection(fresh_url, _drift) if diff[0] == "add_table"}
    assert missing == MODEL_TABLES
    migrate.upgrade(fresh_url)
    assert _on_connection(fresh_url, _drift) == []


def test_single_head() -> None:
    script = ScriptDirectory(str(migrate.MIGRATIONS_DIR))
    assert len(script.get_heads()) == 1


async def test_ready_only_once_migrated(fresh_url: str, tmp_path: Path) -> None:
    app = create_app(make_settings(fresh_url, tmp_path))
    async with LifespanManager(app), asgi_client(app) as client:
        before = await client.get("/v1/health/ready")
        assert before.status_code == 503
        assert before.headers["content-type"] == "application/problem+json"
        assert "agenthub migrate" in before.json()["detail"]
        # Nothing serves data meanwhile: an API call on the unmigrated schema is a 503, not a 500.
        login = await client.post(
            "/v1/auth/login", json={"email": "a@example.com", "password": "whatever pw"}
        )
        assert login.status_code == 503, login.text

        await asyncio.to_thread(migrate.upgrade, fresh_url)

        after = await client.get("/v1/health/ready")
        assert after.status_code == 200, after.text
        body = after.json()
        assert body["status"] == "ready"
        assert body["database"]["status"] == "ok"
        assert body["database"]["latency_ms"] >= 0
        await app.state.database.dispose()
