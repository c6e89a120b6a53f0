"""Alembic revisions: upgrade, downgrade to base and upgrade again; no drift from the models.

Each test gets its own fresh database on both backends: a new SQLite file and a new PostgreSQL
database (created and dropped here), never the session databases the API tests share.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from asgi_lifespan import LifespanManager
from sqlalchemy import Connection, insert, inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agenthub.app import create_app
from agenthub.db import migrate
from agenthub.db.models import Base
from agenthub.search import service as search_service
from agenthub.search.highlight import Markers
from conftest import asgi_client, fresh_postgres, make_settings

MODEL_TABLES = set(Base.metadata.tables)
# The full-text search objects of migration 0003 that no model declares, per dialect.
SEARCH_TABLES = {
    "sqlite": {
        f"{fts}{suffix}"
        for fts in migrate.FTS_TABLES
        for suffix in ("", "_data", "_idx", "_docsize", "_config")
    },
    "postgresql": set(),
}
SEARCH_TRIGGERS = {
    "sqlite": {f"{fts}_{op}" for fts in migrate.FTS_TABLES for op in ("ai", "ad", "au")},
    "postgresql": set(),
}


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database that no migration has touched."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    with fresh_postgres("agenthub_mig") as url:
        yield url


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


def _model_tables(connection: Connection) -> set[str]:
    """The tables Alembic compares with the models: all but the search objects."""
    return {t for t in _tables(connection) if migrate.include_name(t, "table", {})}


def _search_objects(connection: Connection) -> dict[str, set[str]]:
    """What migration 0003 created: FTS tables and triggers, tsvector columns and indexes."""
    inspector = inspect(connection)
    tables = _tables(connection)
    found: dict[str, set[str]] = {
        "tables": {t for t in tables if not migrate.include_name(t, "table", {})},
        "columns": set(),
        "indexes": set(),
        "triggers": set(),
    }
    for table in set(migrate.SEARCH_VECTOR_TABLES) & tables:
        found["columns"] |= {
            f"{table}.{c['name']}"
            for c in inspector.get_columns(table)
            if migrate.is_search_object(c["name"], "column", table)
        }
        found["indexes"] |= {
            str(i["name"])
            for i in inspector.get_indexes(table)
            if migrate.is_search_object(i["name"], "index", table)
        }
    if connection.dialect.name == "sqlite":
        rows = connection.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        found["triggers"] = {row[0] for row in rows if row[0].startswith(migrate.FTS_TABLES)}
    return found


def _dialect(connection: Connection) -> str:
    return connection.dialect.name


def _seed_chat(connection: Connection) -> None:
    """A user with one session and one message, written before the search migration."""
    now = datetime.now(UTC)
    stamps = {"created_at": now, "updated_at": now}
    connection.execute(
        insert(Base.metadata.tables["users"]).values(
            id="usr_seed", email="seed@example.com", password_hash="x", preferences={}, **stamps
        )
    )
    connection.execute(
        insert(Base.metadata.tables["sessions"]).values(
            id="ses_seed",
            user_id="usr_seed",
            agent_type="primary",
            title="Quarterly zeppelin review",
            metadata={},
            last_activity_at=now,
            **stamps,
        )
    )
    connection.execute(
        insert(Base.metadata.tables["messages"]).values(
            id="msg_seed",
            session_id="ses_seed",
            user_id="usr_seed",
            role="user",
            content="The zeppelin landed before the migration ran.",
            metadata={},
            created_at=now,
        )
    )
    connection.commit()


def _search_hits(connection: Connection) -> tuple[list[str], list[str]]:
    """Ids the app's own search statements find for "zeppelin": (sessions, messages)."""
    found: list[list[str]] = []
    for kind in ("sessions", "messages"):
        stmt = search_service.statement(
            connection.dialect.name,
            kind,
            "usr_seed",
            "zeppelin",
            session_id=None,
            markers=Markers(),
            limit=10,
            offset=0,
        )
        assert stmt is not None
        found.append([row.id for row in connection.execute(stmt)])
    return found[0], found[1]


def _revision(connection: Connection) -> str | None:
    return migrate.current_revision(connection)


def _drift(connection: Connection) -> list[Any]:
    # The filters of env.py: the search objects are the migration's, not the models'.
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": False,
            "include_name": migrate.include_name,
            "include_object": migrate.include_object,
        },
    )
    return list(compare_metadata(context, Base.metadata))


def _expected_search_objects(dialect: str) -> dict[str, set[str]]:
    vectors = dialect == "postgresql"
    return {
        "tables": SEARCH_TABLES[dialect],
        "columns": {f"{t}.search_vector" for t in migrate.SEARCH_VECTOR_TABLES if vectors},
        "indexes": set(migrate.SEARCH_VECTOR_INDEXES) if vectors else set(),
        "triggers": SEARCH_TRIGGERS[dialect],
    }


def _assert_at_head(url: str) -> None:
    dialect = _on_connection(url, _dialect)
    assert _on_connection(url, _model_tables) == MODEL_TABLES | {"alembic_version"}
    assert _on_connection(url, _tables) == (
        MODEL_TABLES | {"alembic_version"} | SEARCH_TABLES[dialect]
    )
    assert _on_connection(url, _search_objects) == _expected_search_objects(dialect)
    assert _on_connection(url, _revision) == migrate.head_revision()


def test_upgrade_downgrade_upgrade(fresh_url: str) -> None:
    assert _on_connection(fresh_url, _tables) == set()

    migrate.upgrade(fresh_url)
    _assert_at_head(fresh_url)

    migrate.downgrade(fresh_url, "base")
    assert _on_connection(fresh_url, _tables) <= {"alembic_version"}
    assert _on_connection(fresh_url, _revision) is None

    migrate.upgrade(fresh_url)
    _assert_at_head(fresh_url)


def test_search_migration_down_and_up(fresh_url: str) -> None:
    """0003 removes every search object on the way down and indexes existing rows on the way up."""
    migrate.upgrade(fresh_url)
    migrate.downgrade(fresh_url, "0002")
    empty: dict[str, set[str]] = {k: set() for k in ("tables", "columns", "indexes", "triggers")}
    assert _on_connection(fresh_url, _search_objects) == empty
    assert _on_connection(fresh_url, _model_tables) == MODEL_TABLES | {"alembic_version"}

    _on_connection(fresh_url, _seed_chat)
    migrate.upgrade(fresh_url)
    _assert_at_head(fresh_url)
    assert _on_connection(fresh_url, _search_hits) == (["ses_seed"], ["msg_seed"])

    migrate.downgrade(fresh_url, "0002")
    migrate.upgrade(fresh_url)
    assert _on_connection(fresh_url, _search_hits) == (["ses_seed"], ["msg_seed"])


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
