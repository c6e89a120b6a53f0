"""Request and response bodies of `/v1/agents`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from agenthub.config import McpServerName, RunnerName
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
TOOLS_MAX = 128
DESCRIPTION_MAX = 1024


ToolName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
"""What a model may call a tool: letters, digits, `_` and `-` (at most 64)."""


class McpTool(BaseModel):
    """The tools of an MCP server of `AGENTHUB_MCP_SERVERS`, run by the server."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["mcp"]
    server: McpServerName
    allowed_tools: list[ToolName] | None = Field(
        default=None, max_length=TOOLS_MAX, description="The server's tools offered; absent: all"
    )
    requires_approval: bool = Field(
        default=False, description="Each call waits for the user's approval"
    )


class FunctionTool(BaseModel):
    """A tool the client runs: the run waits for its output."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["function"]
    name: ToolName
    description: str | None = Field(default=None, max_length=DESCRIPTION_MAX)
    parameters: JsonObject = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="The JSON Schema of the call's arguments",
    )
    requires_approval: bool = False

    @field_validator("parameters")
    @classmethod
    def _a_schema(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        from jsonschema import Draft202012Validator, SchemaError

        try:
            Draft202012Validator.check_schema(parameters)
        except SchemaError as exc:
            raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
        return parameters


AgentTool = Annotated[McpTool | FunctionTool, Field(discriminator="type")]


def _distinct_tools(tools: list[McpTool | FunctionTool]) -> list[McpTool | FunctionTool]:
    """The names offered to the model must differ (an MCP server's own names are known only
    when it is reached; those `allowed_tools` lists are checked here), and a server is listed
    once."""
    seen: set[str] = set()
    servers: set[str] = set()
    for tool in tools:
        if isinstance(tool, McpTool):
            if tool.server in servers:
                raise ValueError(f"the MCP server {tool.server!r} is listed twice")
            servers.add(tool.server)
            names = tool.allowed_tools or []
        else:
            names = [tool.name]
        for name in names:
            if name in seen:
                raise ValueError(f"two tools are named {name!r}")
            seen.add(name)
    return tools


AgentTools = Annotated[
    list[AgentTool],
    AfterValidator(_distinct_tools),
    Field(max_length=TOOLS_MAX, description="The tools the agent's model may call"),
]


class RunnerConfig(BaseModel):
    """An agent's runner settings; an uploaded config file holds exactly this object."""

    model_config = ConfigDict(extra="forbid")

    runner: RunnerName
    model: str | None = Field(default=None, max_length=MODEL_MAX)
    system_prompt: str | None = Field(default=None, max_length=PROMPT_MAX)
    options: JsonObject = Field(default_factory=dict, description="Runner settings")
    tools: AgentTools = Field(default_factory=list)


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    type: str = Field(pattern=TYPE_PATTERN, description=TYPE_DESCRIPTION)
    project_id: str | None = Field(default=None, max_length=ID_MAX)
    runner: RunnerName = "echo"
    model: str | None = Field(default=None, max_length=MODEL_MAX)
    system_prompt: str | None = Field(default=None, max_length=PROMPT_MAX)
    options: JsonObject = Field(default_factory=dict, description="Runner settings")
    tools: AgentTools = Field(default_factory=list)
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
    tools: Omittable[AgentTools] = Field(default=None, description="Replaces the list")
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
    tools: list[AgentTool]
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
