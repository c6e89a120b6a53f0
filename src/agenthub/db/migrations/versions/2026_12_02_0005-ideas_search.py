"""ideas_search: full-text index on ideas (idea text and title)

The same design as 0003, for one table with two indexed columns:

SQLite: FTS5 table `ideas_fts(idea, title)` in external-content mode (the text lives only in
`ideas`; the FTS table holds the index, keyed by the row's rowid), kept in step by AFTER
INSERT / DELETE / UPDATE triggers, tokenizer `unicode61 remove_diacritics 2`. Existing rows
are indexed with the `'rebuild'` command. The operational notes of 0003 apply unchanged:
after anything that may renumber rowids, run
`INSERT INTO ideas_fts(ideas_fts) VALUES('rebuild');` (`agenthub.search.sqlite.rebuild_indexes`
does it for every index).

PostgreSQL: a stored generated column `search_vector tsvector` =
`to_tsvector('simple', replace(coalesce(title, '') || ' ' || idea, '<', '< '))` with a GIN
index; `replace` keeps `<word ...>` from being read as an HTML tag (see 0003).

The models do not declare these objects; `agenthub.db.migrate.include_name` keeps them out of
autogenerate comparisons.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 09:30:00.000000
"""

# ruff: noqa: S608 - the DDL is built from the module's constant table and column names.
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOKENIZER = "unicode61 remove_diacritics 2"
TABLE = "ideas"
FTS = f"{TABLE}_fts"
# The indexed columns, in the FTS table's column order.
COLUMNS = ("idea", "title")
# The text the PostgreSQL vector is made of; `search.postgres` builds headlines from the same.
DOCUMENT = "coalesce(title, '') || ' ' || idea"


def _values(prefix: str) -> str:
    return ", ".join(f"{prefix}.{column}" for column in COLUMNS)


def _sqlite_upgrade() -> None:
    columns = ", ".join(COLUMNS)
    op.execute(
        f"CREATE VIRTUAL TABLE {FTS} USING fts5("
        f"{columns}, content='{TABLE}', content_rowid='rowid', tokenize='{TOKENIZER}')"
    )
    op.execute(
        f"CREATE TRIGGER {FTS}_ai AFTER INSERT ON {TABLE} BEGIN "
        f"INSERT INTO {FTS}(rowid, {columns}) VALUES (new.rowid, {_values('new')}); END"
    )
    op.execute(
        f"CREATE TRIGGER {FTS}_ad AFTER DELETE ON {TABLE} BEGIN "
        f"INSERT INTO {FTS}({FTS}, rowid, {columns}) "
        f"VALUES ('delete', old.rowid, {_values('old')}); END"
    )
    # Only when the indexed text changes: the spec and the job id change without it.
    changed = " OR ".join(f"old.{column} IS NOT new.{column}" for column in COLUMNS)
    op.execute(
        f"CREATE TRIGGER {FTS}_au AFTER UPDATE OF {columns} ON {TABLE} WHEN {changed} BEGIN "
        f"INSERT INTO {FTS}({FTS}, rowid, {columns}) "
        f"VALUES ('delete', old.rowid, {_values('old')}); "
        f"INSERT INTO {FTS}(rowid, {columns}) VALUES (new.rowid, {_values('new')}); END"
    )
    op.execute(f"INSERT INTO {FTS}({FTS}) VALUES ('rebuild')")


def _sqlite_downgrade() -> None:
    for suffix in ("au", "ad", "ai"):
        op.execute(f"DROP TRIGGER IF EXISTS {FTS}_{suffix}")
    op.execute(f"DROP TABLE IF EXISTS {FTS}")


def _postgres_upgrade() -> None:
    op.add_column(
        TABLE,
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                f"to_tsvector('simple'::regconfig, replace({DOCUMENT}, '<', '< '))",
                persisted=True,
            ),
            nullable=True,
        ),
    )
    op.create_index(f"ix_{TABLE}_search_vector", TABLE, ["search_vector"], postgresql_using="gin")


def _postgres_downgrade() -> None:
    op.drop_index(f"ix_{TABLE}_search_vector", table_name=TABLE)
    op.drop_column(TABLE, "search_vector")


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        _sqlite_upgrade()
    elif dialect == "postgresql":
        _postgres_upgrade()
    else:
        raise NotImplementedError(f"full-text search is not available on {dialect}")


def downgrade() -> None:
    dialect = op.get_context().dialect.name
    if dialect == "sqlite":
        _sqlite_downgrade()
    elif dialect == "postgresql":
        _postgres_downgrade()
