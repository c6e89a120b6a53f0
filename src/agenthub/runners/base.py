"""The runner interface: a chat request in, streamed text deltas out, a completion at the end."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ChatRole = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model made, recorded as a tool execution."""

    name: str
    arguments: Any
    id: str | None = None
    tool_type: str = "function"


@dataclass(frozen=True)
class ChatMessage:
    """One turn. An assistant turn may carry the `tool_calls` it made; a `tool` turn answers
    the call `tool_call_id` (a tool turn without one is a result from before calls had ids)."""

    role: ChatRole
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ToolSpec:
    """A tool offered to the model: its name, what it does, the JSON Schema of its arguments."""

    name: str
    description: str | None
    parameters: dict[str, Any]


@dataclass(frozen=True)
class RunRequest:
    """What a job asks a runner for; `options` are runner settings (agent's, then the job's)."""

    messages: list[ChatMessage]
    model: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1
    """The job's attempt number, from 1 (the echo runner's `fail_first` counts these)."""
    tools: list[ToolSpec] = field(default_factory=list)
    """The tools the model may call this step (none: it answers in text)."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage
    model: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)


@dataclass(frozen=True)
class RunnerHealth:
    name: str
    configured: bool
    reachable: bool
    version: str | None
    latency_ms: float | None
    breaker: Literal["closed", "open", "half_open"]
    detail: str | None = None


class RunnerError(Exception):
    """A failed run. `transient` failures (connection errors, timeouts, 429, 5xx) are retried
    by the job with backoff, no sooner than `retry_after` seconds when the server said so."""

    def __init__(self, message: str, *, transient: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient
        self.retry_after = retry_after


OnDelta = Callable[[str], Awaitable[None]]


class Runner(Protocol):
    name: str

    async def run(self, request: RunRequest, on_delta: OnDelta) -> Completion:
        """Stream the reply, awaiting `on_delta` for each text chunk; cancellation (the job's
        task being cancelled) must stop the work at once (close the stream, kill the process)."""

    async def health(self) -> RunnerHealth:
        """Probe the backend without running a job."""
