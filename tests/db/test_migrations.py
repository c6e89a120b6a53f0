"""Alembic revisions: upgrade, downgrade to base and upgrade again; no drift from the models.

Each test gets its own fresh database on both backends: a new SQLite file and a new PostgreSQL
database (created and dropped here), never the session databases the API tests share.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from asgi_lifespan import LifespanManager
from sqlalchemy import Connection, insert, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from agenthub.app import create_app
from agenthub.db import migrate
from agenthub.db.models import Base
from agenthub.search import service as search_service
from agenthub.search.highlight import Markers
from agenthub.search.schemas import SearchType
from conftest import asgi_client, fresh_postgres, make_settings

MODEL_TABLES = set(Base.metadata.tables)
# The tables revision 0004 creates (the jobs issue); absent at 0002 and 0003.
TABLES_OF_0004 = {"jobs", "job_dependencies", "workflows", "job_schedules", "ideas"}
# The tables revisions 0006 and 0007 create: logins, the realtime relay's marks.
TABLES_AFTER_0005 = {"logins", "realtime_gaps"}
FTS_SUFFIXES = ("", "_data", "_idx", "_docsize", "_config")
FTS_TRIGGERS = ("ai", "ad", "au")
# The tables each search migration indexes: 0003 messages and sessions, 0005 ideas.
INDEXED_AT = {"0002": (), "0004": ("messages", "sessions")}


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
    """What migrations 0003 and 0005 created: FTS tables and triggers, tsvector columns and
    indexes."""
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


def _seed_user(connection: Connection) -> dict[str, datetime]:
    now = datetime.now(UTC)
    stamps = {"created_at": now, "updated_at": now}
    connection.execute(
        insert(Base.metadata.tables["users"]).values(
            id="usr_seed", email="seed@example.com", password_hash="x", preferences={}, **stamps
        )
    )
    return stamps


def _seed_chat(connection: Connection) -> None:
    """A user with one session and one message, written before the search migration."""
    stamps = _seed_user(connection)
    connection.execute(
        insert(Base.metadata.tables["sessions"]).values(
            id="ses_seed",
            user_id="usr_seed",
            agent_type="primary",
            title="Quarterly zeppelin review",
            metadata={},
            last_activity_at=stamps["created_at"],
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
            created_at=stamps["created_at"],
        )
    )
    connection.commit()


def _seed_idea(connection: Connection) -> None:
    """A user with one idea not generated yet (no title), written before the search migration."""
    stamps = _seed_user(connection)
    connection.execute(
        insert(Base.metadata.tables["ideas"]).values(
            id="ide_seed", user_id="usr_seed", idea="A zeppelin booking app", options={}, **stamps
        )
    )
    connection.commit()


def _search_hits(kinds: tuple[SearchType, ...], connection: Connection) -> dict[str, list[str]]:
    """Ids the app's own search statements find for "zeppelin", by kind."""
    found: dict[str, list[str]] = {}
    for kind in kinds:
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
        found[kind] = [row.id for row in connection.execute(stmt)]
    return found


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


def _expected_search_objects(
    dialect: str, indexed: tuple[str, ...] = migrate.SEARCH_VECTOR_TABLES
) -> dict[str, set[str]]:
    """The search objects of the migrations that index the tables `indexed` (default: all)."""
    fts = [f"{table}_fts" for table in indexed] if dialect == "sqlite" else []
    vectors = indexed if dialect == "postgresql" else ()
    return {
        "tables": {f"{name}{suffix}" for name in fts for suffix in FTS_SUFFIXES},
        "columns": {f"{table}.search_vector" for table in vectors},
        "indexes": {f"ix_{table}_search_vector" for table in vectors},
        "triggers": {f"{name}_{op}" for name in fts for op in FTS_TRIGGERS},
    }


def _assert_at_head(url: str) -> None:
    dialect = _on_connection(url, _dialect)
    search = _expected_search_objects(dialect)
    assert _on_connection(url, _model_tables) == MODEL_TABLES | {"alembic_version"}
    assert _on_connection(url, _tables) == MODEL_TABLES | {"alembic_version"} | search["tables"]
    assert _on_connection(url, _search_objects) == search
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


@pytest.mark.parametrize(
    ("below", "seed", "kinds", "hits"),
    [
        pytest.param(
            "0002",
            _seed_chat,
            ("sessions", "messages"),
            {"sessions": ["ses_seed"], "messages": ["msg_seed"]},
            id="0003-messages-sessions",
        ),
        pytest.param("0004", _seed_idea, ("ideas",), {"ideas": ["ide_seed"]}, id="0005-ideas"),
    ],
)
def test_search_migration_down_and_up(
    fresh_url: str,
    below: str,
    seed: Callable[[Connection], None],
    kinds: tuple[SearchType, ...],
    hits: dict[str, list[str]],
) -> None:
    """A search migration removes its objects on the way down (the older ones stay) and
    indexes existing rows on the way up."""
    migrate.upgrade(fresh_url)
    migrate.downgrade(fresh_url, below)
    dialect = _on_connection(fresh_url, _dialect)
    assert _on_connection(fresh_url, _search_objects) == _expected_search_objects(
        dialect, INDEXED_AT[below]
    )
    model_tables = MODEL_TABLES - TABLES_AFTER_0005 - (TABLES_OF_0004 if below < "0004" else set())
    assert _on_connection(fresh_url, _model_tables) == model_tables | {"alembic_version"}

    _on_connection(fresh_url, seed)
    migrate.upgrade(fresh_url)
    _assert_at_head(fresh_url)
    search = functools.partial(_search_hits, kinds)
    assert _on_connection(fresh_url, search) == hits

    migrate.downgrade(fresh_url, below)
    migrate.upgrade(fresh_url)
    assert _on_connection(fresh_url, search) == hits


def _seed_refresh_tokens(connection: Connection) -> None:
    """Two refresh-token families as revision 0005 stored them: `rtk_a` rotated once (its
    second token live), `rtk_b` revoked."""
    _seed_user(connection)
    day = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        ("rtk_a", "rtk_a", day, day),
        ("rtk_a2", "rtk_a", day.replace(day=2), None),
        ("rtk_b", "rtk_b", day.replace(day=3), None),
    ]
    insert_token = text(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, created_at, "
        "expires_at, rotated_at, revoked_at) VALUES "
        "(:id, 'usr_seed', :family, :hash, :created, :expires, :rotated, :revoked)"
    )
    for token_id, family, created, rotated in rows:
        revoked = day.replace(day=4) if family == "rtk_b" else None
        values = {"id": token_id, "family": family, "hash": token_id + "-hash"}
        times = {"created": created, "expires": created.replace(year=2027)}
        connection.execute(
            insert_token, {**values, **times, "rotated": rotated, "revoked": revoked}
        )
    connection.commit()


def _logins(connection: Connection) -> dict[str, tuple[Any, ...]]:
    rows = connection.exec_driver_sql(
        "SELECT id, user_id, created_at, last_used_at, expires_at, revoked_at FROM logins"
    )
    return {row[0]: (row[1], *(_day(value) for value in row[2:])) for row in rows}


def _token_logins(column: str, connection: Connection) -> dict[str, str]:
    rows = connection.exec_driver_sql(f"SELECT id, {column} FROM refresh_tokens")  # noqa: S608
    return dict(rows.all())


def _day(value: Any) -> int | None:
    """A stored timestamp as its day of the month (SQLite returns text, PostgreSQL datetimes)."""
    return None if value is None else datetime.fromisoformat(str(value)).day


def test_logins_migration_turns_families_into_logins(fresh_url: str) -> None:
    migrate.upgrade(fresh_url, "0005")
    _on_connection(fresh_url, _seed_refresh_tokens)
    migrate.upgrade(fresh_url, "0006")
    assert _on_connection(fresh_url, _logins) == {
        "rtk_a": ("usr_seed", 1, 2, 2, None),
        "rtk_b": ("usr_seed", 3, 3, 3, 4),
    }
    tokens = functools.partial(_token_logins, "login_id")
    assert _on_connection(fresh_url, tokens) == {
        "rtk_a": "rtk_a",
        "rtk_a2": "rtk_a",
        "rtk_b": "rtk_b",
    }

    migrate.downgrade(fresh_url, "0005")
    families = functools.partial(_token_logins, "family_id")
    assert _on_connection(fresh_url, families) == {
        "rtk_a": "rtk_a",
        "rtk_a2": "rtk_a",
        "rtk_b": "rtk_b",
    }
    revoked = functools.partial(_token_logins, "revoked_at")
    assert {k: _day(v) for k, v in _on_connection(fresh_url, revoked).items()} == {
        "rtk_a": None,
        "rtk_a2": None,
        "rtk_b": 4,
    }


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
    # Read from the scripts without Alembic, for the start-up and readiness checks.
    assert migrate.head_revision() == script.get_current_head()


def _revisions(connection: Connection) -> tuple[str | None, str | None]:
    """The revision read from the version table directly and as Alembic reads it."""
    alembic = MigrationContext.configure(connection).get_current_revision()
    return migrate.current_revision(connection), alembic


def test_revision_read_without_alembic_is_alembics(fresh_url: str) -> None:
    assert _on_connection(fresh_url, _revisions) == (None, None)
    migrate.upgrade(fresh_url, "0003")
    assert _on_connection(fresh_url, _revisions) == ("0003", "0003")
    migrate.upgrade(fresh_url)
    assert _on_connection(fresh_url, _revisions) == (migrate.head_revision(),) * 2
    migrate.downgrade(fresh_url, "base")
    assert _on_connection(fresh_url, _revisions) == (None, None)


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
