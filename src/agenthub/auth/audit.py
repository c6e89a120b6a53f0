"""The audit log: security events, recorded in the unit of work of the change they describe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.db.models.auth import AuditEvent


@dataclass(frozen=True)
class ClientInfo:
    """Where a request came from, for the audit log."""

    ip: str | None = None
    user_agent: str | None = None


def audit(
    db: AsyncSession,
    action: str,
    *,
    user_id: str | None,
    client: ClientInfo,
    actor_id: str | None = None,
    **details: Any,
) -> None:
    """Record a security event in the caller's transaction."""
    db.add(
        AuditEvent(
            user_id=user_id,
            actor_id=actor_id if actor_id is not None else user_id,
            action=action,
            ip=client.ip,
            user_agent=(client.user_agent or "")[:256] or None,
            details=details,
        )
    )
