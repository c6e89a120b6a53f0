"""The queue's tables: jobs, their dependencies, workflows and maintenance schedules.

A job's `user_id` is null for system work (maintenance). `attempt` ownership: a worker that
claims a job increments `attempts`; every later state change by that worker is guarded by
`worker_id` and `attempts`, so a worker whose lease was lost cannot overwrite its successor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from agenthub.core.ids import new_id
from agenthub.db.base import Base, utcnow

JOB_STATUSES = ("waiting", "queued", "running", "completed", "failed", "canceled")
FINAL_STATUSES = ("completed", "failed", "canceled")
OPEN_STATUSES = ("waiting", "queued", "running")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_user_id_id", "user_id", "id"),
        Index("ix_jobs_workflow_id", "workflow_id"),
        Index("ix_jobs_agent_id_id", "agent_id", "id"),
        # The claim scans queued jobs in (priority, run_at) order; the reaper scans leases.
        Index(
            "ix_jobs_queued",
            text("priority DESC"),
            "run_at",
            "id",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        Index(
            "ix_jobs_running_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        Index("ix_jobs_status_finished_at", "status", "finished_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("job"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    input: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[Any | None] = mapped_column(JSON)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    timeout_s: Mapped[float] = mapped_column(Float, default=300.0)
    run_at: Mapped[datetime] = mapped_column(default=utcnow)
    depends_on: Mapped[list[str]] = mapped_column(JSON, default=list)
    workflow_id: Mapped[str | None] = mapped_column(ForeignKey("workflows.id", ondelete="CASCADE"))
    step_key: Mapped[str | None] = mapped_column(String(64))
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("sessions.id", ondelete="SET NULL"), index=True
    )
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id", ondelete="SET NULL"))
    worker_id: Mapped[str | None] = mapped_column(String(80))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None]


class JobDependency(Base):
    """Edge `job_id` waits for `depends_on_id`; indexed both ways for release and cascade."""

    __tablename__ = "job_dependencies"

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    depends_on_id: Mapped[str] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Workflow(Base):
    __tablename__ = "workflows"
    __table_args__ = (Index("ix_workflows_user_id_id", "user_id", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("wfl"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    canceled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobSchedule(Base):
    """When a scheduled (maintenance) kind is next due; the process that moves `next_run_at`
    forward enqueues the run, so several workers never enqueue the same run twice."""

    __tablename__ = "job_schedules"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_run_at: Mapped[datetime]
