"""realtime_gaps: channels whose events were lost on their way to the broker

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "realtime_gaps",
        sa.Column("channel", sa.String(length=140), nullable=False),
        sa.Column("relay", sa.String(length=40), nullable=False),
        sa.Column("marks", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("channel", "relay", name=op.f("pk_realtime_gaps")),
    )


def downgrade() -> None:
    op.drop_table("realtime_gaps")
