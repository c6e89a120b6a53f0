"""Request and response bodies of sessions, messages and tool executions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from agenthub.agents.schemas import TYPE_PATTERN
from agenthub.core.jsondata import JsonObject, plain_json
from agenthub.core.schemas import Omittable
from agenthub.db.models.sessions import session_status
from agenthub.jobs.schemas import JobOut

TOOL_TYPE_PATTERN = r"^[a-z][a-z0-9_.\-]{0,31}$"
MAX_CONTENT = 100_000
CALL_ID_MAX = 64
TOOL_NAME_MAX = 200
MAX_TOOL_CALLS = 128
# Per message; the session totals add these up.
MAX_TOKENS = 1_000_000
MAX_TOOL_PAYLOAD = 1_048_576

Role = Literal["user", "assistant", "system", "tool"]
SessionStatus = Literal["active", "archived", "deleted"]
ToolStatus = Literal["pending", "running", "succeeded", "failed"]


def _tool_payload(value: Any) -> Any:
    """Tool input and output: plain JSON of any shape, at most 1 MiB serialized."""
    plain = plain_json(value, max_nodes=100_000)
    if len(json.dumps(plain, separators=(",", ":")).encode()) > MAX_TOOL_PAYLOAD:
        raise ValueError(f"must stay under {MAX_TOOL_PAYLOAD} bytes as JSON")
    return plain


def _utc(value: datetime) -> datetime:
    """Naive times are UTC; times before 1970 are refused (no client means them)."""
    try:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of range") from exc
    if value.year < 1970:
        raise ValueError("must not be before 1970")
    return value


Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
ToolPayload = Annotated[Any, AfterValidator(_tool_payload)]
UtcTime = Annotated[datetime, AfterValidator(_utc)]
Tokens = Annotated[int, Field(ge=0, le=MAX_TOKENS)]


# Sessions


class SessionCreate(BaseModel):
    """Give `agent_id` (one of your agents; its type is used) or `agent_type` (a slug)."""

    model_config = ConfigDict(extra="forbid")

    agent_id: str | None = Field(default=None, max_length=64)
    agent_type: str | None = Field(default=None, pattern=TYPE_PATTERN)
    title: Title | None = None
    project_id: str | None = Field(
        default=None, max_length=64, description="Defaults to the agent's project"
    )
    metadata: JsonObject = Field(default_factory=dict)


class SessionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Omittable[Title] = None
    metadata: Omittable[JsonObject] = Field(default=None, description="Replaces the object")


class SessionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    agent_id: str | None
    agent_type: str
    project_id: str | None
    title: str
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("meta", "metadata"))
    status: SessionStatus
    message_count: int
    prompt_tokens: int
    completion_tokens: int
    last_activity_at: datetime
    archived_at: datetime | None
    deleted_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @model_validator(mode="before")
    @classmethod
    def _status_of_row(cls, data: Any) -> Any:
        """A row by column (`db.unit`) has no `status`: it follows from the row."""
        if isinstance(data, dict) and "status" not in data:
            return {**data, "status": session_status(data["deleted_at"], data["archived_at"])}
        return data


class SessionChange(BaseModel):
    """A created or restored session, and the sessions archived to stay within the limit."""

    session: SessionOut
    archived: list[SessionOut] = Field(
        description="Sessions archived by this request (the least recently active ones of the "
        "same agent type beyond AGENTHUB_MAX_SESSIONS_PER_AGENT_TYPE); usually empty or one"
    )


class StatsRow(BaseModel):
    sessions: int = Field(description="Sessions not deleted (active and archived)")
    active: int
    archived: int
    messages: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AgentTypeStats(StatsRow):
    agent_type: str


class SessionStats(BaseModel):
    by_agent_type: list[AgentTypeStats]
    totals: StatsRow


# Messages


class MessageToolCall(BaseModel):
    """A tool call an assistant turn made (the OpenAI Chat Completions pairing)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1, max_length=CALL_ID_MAX)
    name: str = Field(min_length=1, max_length=TOOL_NAME_MAX)
    arguments: Any = Field(default=None, description="The arguments, parsed when they were JSON")


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: str = Field(min_length=1, max_length=MAX_CONTENT)
    metadata: JsonObject = Field(default_factory=dict)
    prompt_tokens: Tokens = 0
    completion_tokens: Tokens = 0
    tool_calls: list[MessageToolCall] | None = Field(
        default=None,
        max_length=MAX_TOOL_CALLS,
        description="The tool calls an assistant turn made (assistant messages only)",
    )
    tool_call_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=CALL_ID_MAX,
        description="The call a tool result answers (tool messages only)",
    )
    respond: bool = Field(
        default=False,
        description="Ask the session's agent to reply (user messages only); the response is "
        "then `{message, job}`",
    )

    @field_validator("respond")
    @classmethod
    def _only_users_ask(cls, respond: bool, info: ValidationInfo) -> bool:
        if respond and info.data.get("role", "user") != "user":
            raise ValueError("only a user message can ask for a reply")
        return respond

    @field_validator("tool_calls")
    @classmethod
    def _only_assistants_call(
        cls, calls: list[MessageToolCall] | None, info: ValidationInfo
    ) -> list[MessageToolCall] | None:
        if calls is not None and info.data.get("role") != "assistant":
            raise ValueError("only an assistant message makes tool calls")
        return calls

    @field_validator("tool_call_id")
    @classmethod
    def _only_tools_answer(cls, call_id: str | None, info: ValidationInfo) -> str | None:
        if call_id is not None and info.data.get("role") != "tool":
            raise ValueError("only a tool message answers a tool call")
        return call_id


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    session_id: str
    role: Role
    content: str
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("meta", "metadata"))
    prompt_tokens: int
    completion_tokens: int
    created_at: datetime
    tool_calls: list[MessageToolCall] | None = None
    tool_call_id: str | None = None


class SessionDetail(SessionOut):
    messages: list[MessageOut] = Field(
        description="The last `?messages=N` messages, oldest first (empty by default)"
    )


class MessageWithJob(BaseModel):
    """The answer to `"respond": true`."""

    message: MessageOut
    job: JobOut = Field(description="The `agent.reply` job that produces the reply")


# Tool executions


class ToolCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool_name: str = Field(min_length=1, max_length=200)
    tool_type: str = Field(
        default="function", pattern=TOOL_TYPE_PATTERN, description="mcp, function, builtin, ..."
    )
    input: Annotated[dict[str, Any], AfterValidator(_tool_payload)] = Field(default_factory=dict)
    status: Literal["pending", "running"] = "pending"
    message_id: str | None = Field(
        default=None, max_length=64, description="A message of the same session"
    )
    started_at: UtcTime | None = Field(
        default=None, description="Defaults to now when created `running`"
    )


class ToolPatch(BaseModel):
    """Progress: pending → running → succeeded | failed. Final states admit no change."""

    model_config = ConfigDict(extra="forbid")

    status: Omittable[ToolStatus] = None
    output: ToolPayload = None
    error: str | None = Field(default=None, max_length=MAX_CONTENT)


class ToolOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    session_id: str
    message_id: str | None
    tool_name: str
    tool_type: str
    input: Any
    output: Any
    error: str | None
    status: ToolStatus
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    created_at: datetime
    updated_at: datetime


# Export


class SessionExport(BaseModel):
    """`?format=json`: everything a session holds, streamed."""

    session: SessionOut
    messages: list[MessageOut]
    tool_executions: list[ToolOut]
    exported_at: datetime
