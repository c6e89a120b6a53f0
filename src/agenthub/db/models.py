"""Every table, imported once so that Alembic and the tests see the whole schema."""

from __future__ import annotations

from agenthub.agents.models import Agent
from agenthub.auth.models import ApiKey, AuditEvent, RefreshToken, User
from agenthub.core.idempotency import IdempotencyRecord
from agenthub.db.base import Base
from agenthub.files.models import StoredFile
from agenthub.projects.models import Project
from agenthub.sessions.models import ChatSession, Message, ToolExecution

__all__ = [
    "Agent",
    "ApiKey",
    "AuditEvent",
    "Base",
    "ChatSession",
    "IdempotencyRecord",
    "Message",
    "Project",
    "RefreshToken",
    "StoredFile",
    "ToolExecution",
    "User",
]
