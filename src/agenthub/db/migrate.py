"""Alembic entry points used by the CLI, the app's start-up and the tests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.environment import NameFilterParentNames, NameFilterType
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Connection, Index, column, inspect, select, table
from sqlalchemy.schema import SchemaItem

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
VERSION_TABLE = table("alembic_version", column("version_num"))

# Full-text search objects that migrations 0003 and 0005 create and the models do not declare
# (they are dialect-specific): SQLite FTS5 tables with their shadow tables, PostgreSQL generated
# `search_vector` columns with their GIN indexes. Autogenerate and the drift test skip them.
FTS_TABLES = ("messages_fts", "sessions_fts", "ideas_fts")
FTS_SHADOW_SUFFIXES = ("_data", "_idx", "_docsize", "_config", "_content")
SEARCH_VECTOR_COLUMN = "search_vector"
SEARCH_VECTOR_TABLES = ("messages", "sessions", "ideas")
SEARCH_VECTOR_INDEXES = tuple(f"ix_{t}_{SEARCH_VECTOR_COLUMN}" for t in SEARCH_VECTOR_TABLES)
# Indexes with an expression column (`priority DESC`), created by their migration as declared.
EXPRESSION_INDEXES = ("ix_jobs_queued",)


def is_search_object(name: str | None, type_: str, table_name: str | None = None) -> bool:
    """True for a full-text search object that no model declares (`type_` as Alembic names it)."""
    if name is None:
        return False
    if type_ == "table":
        return any(name in (t, *(t + s for s in FTS_SHADOW_SUFFIXES)) for t in FTS_TABLES)
    if type_ == "column":
        return name == SEARCH_VECTOR_COLUMN and table_name in SEARCH_VECTOR_TABLES
    if type_ == "index":
        return name in SEARCH_VECTOR_INDEXES
    return False


def include_name(
    name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames
) -> bool:
    """Alembic `include_name`: reflect everything but the full-text search objects."""
    return not is_search_object(name, type_, parent_names.get("table_name"))


def include_object(
    obj: SchemaItem,
    name: str | None,
    type_: NameFilterType,
    reflected: bool,
    compare_to: SchemaItem | None,
) -> bool:
    """Alembic `include_object`: the same rule for reflected objects (a safety net for
    comparisons that do not run the name filter first), and no comparison of indexes with
    expression columns, which SQLite reflection cannot read back."""
    if type_ == "index" and name in EXPRESSION_INDEXES:
        return False
    table = obj.table.name if isinstance(obj, Column | Index) and obj.table is not None else None
    return not (reflected and is_search_object(name, type_, table))


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.set_main_option(
        "file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(slug)s"
    )
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, None when unmigrated. Read from Alembic's version
    table directly: an Alembic migration context logs two INFO lines each time it is made,
    and the readiness probe asks on every call."""
    if not inspect(connection).has_table(VERSION_TABLE.name):
        return None
    revision = connection.scalar(select(VERSION_TABLE.c.version_num))
    return None if revision is None else str(revision)


def revision_of(database_url: str) -> str | None:
    """The revision the database of `database_url` is at (None: no schema)."""
    from sqlalchemy import pool
    from sqlalchemy.ext.asyncio import create_async_engine

    async def read() -> str | None:
        engine = create_async_engine(database_url, poolclass=pool.NullPool)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(current_revision)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def label(revision: str | None) -> str:
    """A revision as its file names it (`0004_jobs`), or "no schema"."""
    if revision is None:
        return "no schema"
    script = ScriptDirectory(str(MIGRATIONS_DIR)).get_revision(revision)
    slug = Path(script.path).stem.partition("-")[2] if script is not None else ""
    return f"{revision}_{slug}" if slug else revision


def pending_migration(revision: str | None) -> str | None:
    """None when `revision` is the head, else how far the schema is behind (or ahead)."""
    head = head_revision()
    return None if revision == head else f"schema at {revision or 'nothing'}, expected {head}"
