"""messages.tool_calls and messages.tool_call_id: an assistant turn's calls, a tool turn's call

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-12 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN, not a batch: on SQLite a batch copies the table (dropping its triggers).
    op.add_column("messages", sa.Column("tool_calls", sa.JSON(), nullable=True))
    op.add_column("messages", sa.Column("tool_call_id", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("messages", "tool_call_id")
    op.drop_column("messages", "tool_calls")
