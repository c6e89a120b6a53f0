"""Every table, imported once so that Alembic and the tests see the whole schema."""

from __future__ import annotations

from agenthub.auth.models import ApiKey, AuditEvent, RefreshToken, User
from agenthub.core.idempotency import IdempotencyRecord
from agenthub.db.base import Base

__all__ = ["ApiKey", "AuditEvent", "Base", "IdempotencyRecord", "RefreshToken", "User"]
