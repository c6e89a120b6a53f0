"""Every table, imported once so that Alembic and the tests see the whole schema."""

from __future__ import annotations

from agenthub.db.base import Base
from agenthub.db.models.agents import Agent
from agenthub.db.models.auth import ApiKey, AuditEvent, Login, RefreshToken, User
from agenthub.db.models.files import StoredFile
from agenthub.db.models.ideas import Idea
from agenthub.db.models.idempotency import IdempotencyRecord
from agenthub.db.models.jobs import Job, JobDependency, JobSchedule, Workflow
from agenthub.db.models.projects import Project
from agenthub.db.models.realtime import RealtimeGap
from agenthub.db.models.sessions import ChatSession, Message, ToolExecution

__all__ = [
    "Agent",
    "ApiKey",
    "AuditEvent",
    "Base",
    "ChatSession",
    "Idea",
    "IdempotencyRecord",
    "Job",
    "JobDependency",
    "JobSchedule",
    "Login",
    "Message",
    "Project",
    "RealtimeGap",
    "RefreshToken",
    "StoredFile",
    "ToolExecution",
    "User",
    "Workflow",
]
