"""search: full-text indexes on messages.content and sessions.title

SQLite: FTS5 tables `messages_fts` and `sessions_fts` in external-content mode (the text lives
only in `messages` / `sessions`; the FTS table holds the index, keyed by the row's rowid), kept
in step by AFTER INSERT / DELETE / UPDATE triggers as in the FTS5 documentation, tokenizer
`unicode61 remove_diacritics 2`. Existing rows are indexed with the `'rebuild'` command.

PostgreSQL: a stored generated column `search_vector tsvector` =
`to_tsvector('simple', replace(content|title, '<', '< '))` on each table with a GIN index; the
database maintains it on every insert and update, so nothing else has to. The `replace` keeps
PostgreSQL's default parser from reading `<word ...>` as an HTML tag and skipping it: chat text
is full of code and markup, and its words must be found as on SQLite.

Operational notes (SQLite):

- The index is keyed by rowid, and `messages` / `sessions` have text primary keys, so their
  rowids are not aliased by an INTEGER PRIMARY KEY. SQLite documents that VACUUM *may* renumber
  such rowids (current versions keep them), and a table rebuilt by copying (an Alembic batch
  migration, a dump and reload) renumbers them and drops these triggers. After any of those,
  recreate the triggers if needed and run
  `INSERT INTO messages_fts(messages_fts) VALUES('rebuild');` and the same for `sessions_fts`
  (`agenthub.search.sqlite.rebuild_indexes` does both). `... VALUES('integrity-check')` verifies.
- `INSERT OR REPLACE` into these tables skips the delete trigger unless
  `PRAGMA recursive_triggers` is on; write them with INSERT, UPDATE, DELETE or `ON CONFLICT`.

The models do not declare these objects; `agenthub.db.migrate.include_name` keeps them out of
autogenerate comparisons.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 14:05:00.000000
"""

# ruff: noqa: S608 - the DDL is built from the module's constant table and column names.
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOKENIZER = "unicode61 remove_diacritics 2"
# (source table, indexed column) for each FTS table `<table>_fts`.
INDEXED = (("messages", "content"), ("sessions", "title"))


def _sqlite_upgrade(table: str, column: str) -> None:
    fts = f"{table}_fts"
    op.execute(
        f"CREATE VIRTUAL TABLE {fts} USING fts5("
        f"{column}, content='{table}', content_rowid='rowid', tokenize='{TOKENIZER}')"
    )
    op.execute(
        f"CREATE TRIGGER {fts}_ai AFTER INSERT ON {table} BEGIN "
        f"INSERT INTO {fts}(rowid, {column}) VALUES (new.rowid, new.{column}); END"
    )
    op.execute(
        f"CREATE TRIGGER {fts}_ad AFTER DELETE ON {table} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.rowid, old.{column}); "
        "END"
    )
    # Only when the indexed text changes: sessions are updated on every new message.
    op.execute(
        f"CREATE TRIGGER {fts}_au AFTER UPDATE OF {column} ON {table} "
        f"WHEN old.{column} IS NOT new.{column} BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, {column}) VALUES ('delete', old.rowid, old.{column}); "
        f"INSERT INTO {fts}(rowid, {column}) VALUES (new.rowid, new.{column}); END"
    )
    op.execute(f"INSERT INTO {fts}({fts}) VALUES ('rebuild')")


def _sqlite_downgrade(table: str) -> None:
    fts = f"{table}_fts"
    for suffix in ("au", "ad", "ai"):
        op.execute(f"DROP TRIGGER IF EXISTS {fts}_{suffix}")
    op.execute(f"DROP TABLE IF EXISTS {fts}")


def _postgres_upgrade(table: str, column: str) -> None:
    op.add_column(
        table,
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                f"to_tsvector('simple'::regconfig, replace({column}, '<', '< '))", persisted=True
            ),
            nullable=True,
        ),
    )
    op.create_index(f"ix_{table}_search_vector", table, ["search_vector"], postgresql_using="gin")


def _postgres_downgrade(table: str) -> None:
    op.drop_index(f"ix_{table}_search_vector", table_name=table)
    op.drop_column(table, "search_vector")


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    for table, column in INDEXED:
        if dialect == "sqlite":
            _sqlite_upgrade(table, column)
        elif dialect == "postgresql":
            _postgres_upgrade(table, column)
        else:
            raise NotImplementedError(f"full-text search is not available on {dialect}")


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    for table, _ in reversed(INDEXED):
        if dialect == "sqlite":
            _sqlite_downgrade(table)
        elif dialect == "postgresql":
            _postgres_downgrade(table)
