"""Request and response bodies of the job routes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from agenthub.core.jsondata import JsonObject
from agenthub.core.schemas import Distinct

JobStatus = Literal["waiting", "queued", "running", "completed", "failed", "canceled"]
FinalStatus = Literal["completed", "failed", "canceled"]
JobAction = Literal["cancel", "retry", "delete"]
ID_MAX = 64
KIND_MAX = 64
BULK_MAX = 200
MAX_DEPENDENCIES = 100
MAX_ATTEMPTS = 25
MAX_TIMEOUT_S = 86_400.0
JobIdItem = Annotated[str, Field(max_length=ID_MAX)]


class LatencyPercentiles(BaseModel):
    p50: float | None
    p95: float | None
    p99: float | None


class JobError(BaseModel):
    type: str
    message: str


class JobProgress(BaseModel):
    percent: float | None = None
    message: str | None = None


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: str = Field(max_length=KIND_MAX, description="A registered kind, e.g. `llm.complete`")
    input: JsonObject = Field(default_factory=dict, description="Validated by the kind")
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first")
    depends_on: Annotated[list[JobIdItem], Distinct] = Field(
        default_factory=list,
        max_length=MAX_DEPENDENCIES,
        description="Jobs that must complete first; the job waits until they have",
    )
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS)
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    run_at: AwareDatetime | None = Field(default=None, description="Not before this time")

    @field_validator("run_at")
    @classmethod
    def _in_utc(cls, run_at: datetime | None) -> datetime | None:
        """Stored and answered in UTC, whatever offset it came with (one without is 422)."""
        return None if run_at is None else run_at.astimezone(UTC)


class JobOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    kind: str
    status: JobStatus
    input: dict[str, Any]
    result: Any | None
    error: JobError | None
    progress: JobProgress | None
    priority: int
    attempts: int
    max_attempts: int
    timeout_s: float
    run_at: datetime
    depends_on: list[str]
    workflow_id: str | None
    session_id: str | None
    agent_id: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    worker_id: str | None


class JobBulk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: JobAction
    ids: Annotated[list[JobIdItem], Distinct] = Field(min_length=1, max_length=BULK_MAX)


class JobBulkItem(BaseModel):
    id: str
    ok: bool
    status: int = Field(description="What the single request would have answered (404, 409...)")
    error: str | None = None
    job: JobOut | None = None


class JobBulkOutcome(BaseModel):
    results: list[JobBulkItem]
    succeeded: int
    failed: int


class Throughput(BaseModel):
    completed_last_minute: int
    completed_last_hour: int
    failed_last_hour: int


class JobStats(BaseModel):
    """The caller's jobs (all jobs for administrators)."""

    by_status: dict[str, int]
    by_kind: dict[str, dict[str, int]]
    throughput: Throughput
    run_ms: LatencyPercentiles = Field(description="Run time of recent completed jobs")
    wait_ms: LatencyPercentiles = Field(description="Time from queued to started")


class KindQueue(BaseModel):
    kind: str
    queued: int
    running: int
    oldest_queued_age_s: float | None


class QueueInfo(BaseModel):
    kinds: list[KindQueue]
    queued: int
    running: int
    waiting: int
    oldest_queued_age_s: float | None
    workers: list[dict[str, Any]] = Field(description="Live worker processes (id, kinds, ...)")


class JobCleanup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    older_than_days: float = Field(
        default=7, ge=0, le=36_500, description="Finished before this long ago"
    )
    statuses: list[FinalStatus] = Field(
        default_factory=lambda: list(get_args(FinalStatus)), min_length=1
    )


class JobCleanupOutcome(BaseModel):
    deleted: int
