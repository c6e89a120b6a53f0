"""Every table, imported once so that Alembic and the tests see the whole schema."""

from __future__ import annotations

from agenthub.agents.models import Agent
from agenthub.auth.models import ApiKey, AuditEvent, Login, RefreshToken, User
from agenthub.core.idempotency import IdempotencyRecord
from agenthub.db.base import Base
from agenthub.files.models import StoredFile
from agenthub.ideas.models import Idea
from agenthub.jobs.models import Job, JobDependency, JobSchedule, Workflow
from agenthub.projects.models import Project
from agenthub.realtime.gaps import RealtimeGap
from agenthub.sessions.models import ChatSession, Message, ToolExecution

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
