"""logins: a table of logins; refresh tokens belong to one (`family_id` becomes `login_id`)

Each existing refresh-token family becomes a login with the family's id: created with its
first token, last used with its newest, expiring with its newest, revoked if its tokens were
(a revocation now marks the login, so `refresh_tokens.revoked_at` goes).
Access tokens issued before this revision carry no login id and are refused: clients refresh.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 14:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOGIN_FK = "fk_refresh_tokens_login_id_logins"


def upgrade() -> None:
    op.create_table(
        "logins",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("user_agent", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_logins_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_logins")),
    )
    op.create_index("ix_logins_user_id_id", "logins", ["user_id", "id"])
    op.execute(
        "INSERT INTO logins (id, user_id, created_at, last_used_at, expires_at, revoked_at) "
        "SELECT family_id, MIN(user_id), MIN(created_at), MAX(created_at), MAX(expires_at), "
        "MAX(revoked_at) FROM refresh_tokens GROUP BY family_id"
    )
    op.drop_index("ix_refresh_tokens_family_id", table_name="refresh_tokens")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.alter_column("family_id", new_column_name="login_id")
        batch.drop_column("revoked_at")
    with op.batch_alter_table("refresh_tokens") as batch:  # SQLite: the renamed column first
        batch.create_foreign_key(LOGIN_FK, "logins", ["login_id"], ["id"], ondelete="CASCADE")
    op.create_index("ix_refresh_tokens_login_id", "refresh_tokens", ["login_id"])


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_login_id", table_name="refresh_tokens")
    with op.batch_alter_table("refresh_tokens") as batch:
        batch.drop_constraint(LOGIN_FK, type_="foreignkey")
        batch.alter_column("login_id", new_column_name="family_id")
        batch.add_column(sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE refresh_tokens SET revoked_at = "
        "(SELECT revoked_at FROM logins WHERE logins.id = refresh_tokens.family_id)"
    )
    op.create_index("ix_refresh_tokens_family_id", "refresh_tokens", ["family_id"])
    op.drop_index("ix_logins_user_id_id", table_name="logins")
    op.drop_table("logins")
