"""Request and response bodies of `/v1/agents`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agenthub.config import RunnerName
from agenthub.core.jsondata import JsonObject
from agenthub.core.schemas import Distinct, Omittable
from agenthub.jobs.schemas import LatencyPercentiles

AgentStatus = Literal["idle", "running", "stopped", "error"]
BulkAction = Literal["start", "stop", "update", "delete"]
LogLevel = Literal["debug", "info", "warning", "error"]

BUILTIN_TYPES = ("primary", "log_analysis", "research", "router")
TYPE_PATTERN = r"^[a-z][a-z0-9_\-]{0,63}$"
TYPE_DESCRIPTION = (
    f"One of {', '.join(BUILTIN_TYPES)}, or a slug of your own (lowercase letters, digits, "
    "`_`, `-`; starting with a letter)"
)
NAME_MAX = 200
MODEL_MAX = 200
PROMPT_MAX = 100_000
ID_MAX = 64
BULK_MAX = 100


class RunnerConfig(BaseModel):
    """An agent's runner settings; an uploaded config file holds exactly this object."""

    model_config = ConfigDict(extra="forbid")

    runner: RunnerName
    model: str | None = Field(default=None, max_length=MODEL_MAX)
    system_prompt: str | None = Field(default=None, max_length=PROMPT_MAX)
    options: JsonObject = Field(default_factory=dict, description="Runner settings")


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    type: str = Field(pattern=TYPE_PATTERN, description=TYPE_DESCRIPTION)
    project_id: str | None = Field(default=None, max_length=ID_MAX)
    runner: RunnerName = "echo"
    model: str | None = Field(default=None, max_length=MODEL_MAX)
    system_prompt: str | None = Field(default=None, max_length=PROMPT_MAX)
    options: JsonObject = Field(default_factory=dict, description="Runner settings")
    status: AgentStatus = "idle"


class AgentPatch(BaseModel):
    """Only the fields present change; `project_id`, `model` and `system_prompt` may be null."""

    model_config = ConfigDict(extra="forbid")

    name: Omittable[str] = Field(default=None, min_length=1, max_length=NAME_MAX)
    type: Omittable[str] = Field(default=None, pattern=TYPE_PATTERN, description=TYPE_DESCRIPTION)
    project_id: str | None = Field(default=None, max_length=ID_MAX)
    runner: Omittable[RunnerName] = None
    model: str | None = Field(default=None, max_length=MODEL_MAX)
    system_prompt: str | None = Field(default=None, max_length=PROMPT_MAX)
    options: Omittable[JsonObject] = Field(default=None, description="Replaces the object")
    status: Omittable[AgentStatus] = None


class AgentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    type: str
    project_id: str | None
    runner: RunnerName
    model: str | None
    system_prompt: str | None
    options: dict[str, Any]
    status: AgentStatus
    created_at: datetime
    updated_at: datetime


class AgentBulk(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: BulkAction = Field(
        description="`start` sets status running, `stop` stopped, `update` applies `patch`"
    )
    ids: Annotated[list[Annotated[str, Field(max_length=ID_MAX)]], Distinct] = Field(
        min_length=1, max_length=BULK_MAX, json_schema_extra={"uniqueItems": True}
    )
    patch: AgentPatch | None = Field(default=None, description="Required for `update` only")


class BulkItem(BaseModel):
    id: str
    ok: bool
    status: int = Field(description="What the single request would have answered (404, ...)")
    error: str | None = None
    agent: AgentOut | None = Field(default=None, description="The agent after the change")


class BulkOutcome(BaseModel):
    results: list[BulkItem]
    succeeded: int
    failed: int


class TokenUsage(BaseModel):
    prompt: int
    completion: int
    total: int


class AgentMetrics(BaseModel):
    """The agent's runs are its `agent.reply` jobs; tokens count its sessions' messages."""

    runs: int = Field(description="Finished runs (completed or failed)")
    failures: int
    tokens: TokenUsage
    latency_ms: LatencyPercentiles = Field(description="Run time of recent completed runs")


class LogLine(BaseModel):
    ts: datetime
    level: LogLevel
    message: str
