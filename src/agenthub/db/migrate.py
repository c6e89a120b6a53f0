"""Alembic entry points used by the CLI, the app's start-up and the tests.

Alembic is imported only to migrate: the revision checks of every start-up and health probe
read the version table and the scripts' revision identifiers directly.
"""

from __future__ import annotations

import ast
import asyncio
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Connection, Index, column, inspect, pool, select, table
from sqlalchemy.ext.asyncio import create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config
    from alembic.runtime.environment import NameFilterParentNames, NameFilterType
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
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.set_main_option(
        "file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(hour).2d%%(minute).2d-%%(slug)s"
    )
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate up to `revision`; a database already at the head is only read, not migrated."""
    if revision == "head" and revision_of(database_url) == head_revision():
        return
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(database_url), revision)


@functools.cache
def head_revision() -> str | None:
    """The newest revision of the scripts: the one no other script revises (None without
    scripts). Read from their `revision` / `down_revision` assignments, as Alembic does
    without importing them."""
    revisions: dict[str, tuple[str, ...]] = {}
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        values = _assignments(script, ("revision", "down_revision"))
        down = values.get("down_revision")
        revisions[values["revision"]] = (down,) if isinstance(down, str) else tuple(down or ())
    revised = {down for downs in revisions.values() for down in downs}
    heads = sorted(set(revisions) - revised)
    if len(heads) > 1:
        raise RuntimeError(f"several head revisions: {', '.join(heads)}; merge them")
    return heads[0] if heads else None


def _assignments(script: Path, names: tuple[str, ...]) -> dict[str, Any]:
    """The literal values assigned to `names` at the top level of a Python file."""
    found: dict[str, Any] = {}
    for node in ast.parse(script.read_text(encoding="utf-8")).body:
        targets: list[ast.expr]
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        elif isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id in names:
                found[target.id] = ast.literal_eval(value)
    return found


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, None when unmigrated. Read from Alembic's version
    table directly: an Alembic migration context logs two INFO lines each time it is made,
    and the readiness probe asks on every call."""
    if not inspect(connection).has_table(VERSION_TABLE.name):
        return None
    revision = connection.scalar(select(VERSION_TABLE.c.version_num))
    return None if revision is None else str(revision)


async def _revision_at(database_url: str) -> str | None:
    engine = create_async_engine(database_url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(current_revision)
    finally:
        await engine.dispose()


def revision_of(database_url: str) -> str | None:
    """The revision the database of `database_url` is at (None: no schema)."""
    return asyncio.run(_revision_at(database_url))


def label(revision: str | None) -> str:
    """A revision as its script's file names it (`0004_jobs`), or "no schema"."""
    if revision is None:
        return "no schema"
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        if _assignments(script, ("revision",)).get("revision") == revision:
            return f"{revision}_{script.stem.partition('-')[2]}"
    return revision


def pending_migration(revision: str | None) -> str | None:
    """None when `revision` is the head, else how far the schema is behind (or ahead)."""
    head = head_revision()
    return None if revision == head else f"schema at {revision or 'nothing'}, expected {head}"
