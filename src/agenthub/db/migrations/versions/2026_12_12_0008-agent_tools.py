"""agents.tools: the MCP servers and client functions an agent's model may call

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-12 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # ADD COLUMN, not a batch: on SQLite a batch copies the table (dropping its triggers).
    op.add_column("agents", sa.Column("tools", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    op.drop_column("agents", "tools")
