"""Request and response bodies of the workflow routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agenthub.core.jsondata import JsonObject
from agenthub.core.schemas import Distinct
from agenthub.jobs.schemas import KIND_MAX, MAX_ATTEMPTS, MAX_TIMEOUT_S, JobError, JobStatus

MAX_STEPS = 100
STEP_KEY_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
StepKey = Annotated[str, Field(pattern=STEP_KEY_PATTERN, description="Unique in the workflow")]
WorkflowStatus = Literal["queued", "running", "completed", "failed", "canceled"]


class StepCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: StepKey
    kind: str = Field(max_length=KIND_MAX, description="A registered kind, e.g. `llm.complete`")
    input: JsonObject = Field(
        default_factory=dict,
        description="Validated by the kind; a string `${steps.<key>.result[.<path>]}` is "
        "replaced by that dependency's result (or the part at the dot-separated path) when "
        "the step runs, and such a reference inside a longer string is interpolated as text",
    )
    depends_on: Annotated[list[StepKey], Distinct] = Field(
        default_factory=list,
        max_length=MAX_STEPS,
        description="Keys of steps of this workflow that must complete first",
    )
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS)
    timeout_s: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_S)
    priority: int = Field(default=0, ge=-1000, le=1000, description="Higher runs first")


class WorkflowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    steps: list[StepCreate] = Field(min_length=1, max_length=MAX_STEPS)


class StepOut(BaseModel):
    key: str
    job_id: str
    status: JobStatus
    kind: str
    depends_on: list[str] = Field(description="Keys of the steps this one waits for")
    result: Any | None = None
    error: JobError | None = None


class WorkflowProgress(BaseModel):
    completed: int
    total: int
    percent: float


class WorkflowOut(BaseModel):
    id: str
    name: str
    status: WorkflowStatus = Field(
        description="`canceled` once canceled; else `failed` as soon as a step failed (even "
        "while other branches still run), `canceled` if a step was canceled on its own; "
        "`completed` when every step has; `running` once a step started; else `queued`"
    )
    progress: WorkflowProgress
    steps: list[StepOut]
    created_at: datetime
    finished_at: datetime | None = Field(description="When the last open step ended")
