"""The `openai` runner: any OpenAI-compatible Chat Completions endpoint (OpenAI, Gemini's
compatible endpoint, Ollama, vLLM, llama.cpp server), streamed.

The SDK never retries (`max_retries=0`): retrying is the job's business, paced by the
`RunnerError.transient` / `retry_after` this runner reports. The SDK is imported only where
the runner is configured: it takes longer to import than the rest of the server.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agenthub.config import Settings
from agenthub.runners.base import (
    ChatMessage,
    Completion,
    OnDelta,
    RunnerError,
    RunnerHealth,
    RunRequest,
    ToolCall,
    ToolSpec,
    Usage,
)
from agenthub.runners.resilience import parse_retry_after

if TYPE_CHECKING:
    import openai
    from openai import AsyncOpenAI
    from openai.types.chat import (
        ChatCompletionChunk,
        ChatCompletionMessageParam,
        ChatCompletionToolParam,
    )
    from openai.types.shared_params import FunctionDefinition

# Request options passed through to the API; any other option is ignored, not sent.
ALLOWED_OPTIONS = frozenset(
    {
        "temperature",
        "top_p",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "response_format",
        "reasoning_effort",
        "user",
    }
)
# Response headers that may carry the server's version, first found wins.
VERSION_HEADERS = ("x-server-version", "x-version", "openai-version", "x-ollama-version")
HEALTH_TIMEOUT_SECONDS = 5.0
TRANSIENT_STATUSES = frozenset({408, 409})
NO_API_KEY = "not-needed"  # local servers (Ollama, llama.cpp) take any key; the SDK wants one
MAX_MESSAGE_CHARS = 500


def chat_messages(messages: list[ChatMessage]) -> list[ChatCompletionMessageParam]:
    """The request's messages in the API's shape: an assistant turn with the tool calls it
    made, each tool result paired with its call's id. A tool result without a call id (stored
    before calls had ids), which the API would refuse, is sent as a user message marked as a
    tool result."""
    out: list[ChatCompletionMessageParam] = []
    for message in messages:
        if message.role == "system":
            out.append({"role": "system", "content": message.content})
        elif message.role == "assistant" and message.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": message.content or None,
                    "tool_calls": [
                        {
                            "id": call.id or f"call_{index}",
                            "type": "function",
                            "function": {"name": call.name, "arguments": _json(call.arguments)},
                        }
                        for index, call in enumerate(message.tool_calls)
                    ],
                }
            )
        elif message.role == "assistant":
            out.append({"role": "assistant", "content": message.content})
        elif message.role == "tool" and message.tool_call_id is not None:
            out.append(
                {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
            )
        elif message.role == "tool":
            out.append({"role": "user", "content": f"Tool result:\n{message.content}"})
        else:
            out.append({"role": "user", "content": message.content})
    return out


def tool_params(tools: list[ToolSpec]) -> list[ChatCompletionToolParam]:
    """The tools offered, as the API's function tools."""
    out: list[ChatCompletionToolParam] = []
    for tool in tools:
        function: FunctionDefinition = {"name": tool.name, "parameters": tool.parameters}
        if tool.description:
            function["description"] = tool.description
        out.append({"type": "function", "function": function})
    return out


def _json(arguments: Any) -> str:
    """Arguments as the API carries them: a JSON text (a string the model sent that was no
    JSON stays as it was)."""
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def parse_arguments(raw: str) -> Any:
    """Tool call arguments as JSON when they parse (empty: `{}`), else the raw string."""
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@dataclass
class _PendingCall:
    id: str | None = None
    name: str = ""
    tool_type: str = "function"
    arguments: list[str] = field(default_factory=list)


@dataclass
class _Collector:
    """What the chunks of one stream add up to."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, _PendingCall] = field(default_factory=dict)
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    finished: bool = False

    def add(self, chunk: ChatCompletionChunk) -> str:
        """Take one chunk in; returns its text (possibly empty)."""
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
        delta_text = ""
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            if choice.finish_reason is not None:
                self.finished = True
            delta = choice.delta
            if delta.content:
                delta_text += delta.content
            for call in delta.tool_calls or ():
                pending = self.calls.setdefault(call.index, _PendingCall())
                pending.id = call.id or pending.id
                pending.tool_type = call.type or pending.tool_type
                if call.function is not None:
                    pending.name += call.function.name or ""
                    pending.arguments.append(call.function.arguments or "")
        self.text.append(delta_text)
        return delta_text

    def tool_calls(self) -> list[ToolCall]:
        return [
            ToolCall(
                name=call.name,
                arguments=parse_arguments("".join(call.arguments)),
                id=call.id,
                tool_type=call.tool_type,
            )
            for _, call in sorted(self.calls.items())
        ]


def runner_error(exc: openai.OpenAIError) -> RunnerError:
    """The SDK's error as a `RunnerError`: 429, 408, 409, 5xx and connection failures are
    transient; other statuses are not."""
    import openai

    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = f"openai: HTTP {status}: {_clip(exc.message)}"
        transient = status == 429 or status in TRANSIENT_STATUSES or status >= 500
        retry_after = parse_retry_after(exc.response.headers) if transient else None
        return RunnerError(message, transient=transient, retry_after=retry_after)
    if isinstance(exc, openai.APITimeoutError):
        return RunnerError("openai: request timed out", transient=True)
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        reason = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc)
        return RunnerError(f"openai: connection failed: {_clip(reason)}", transient=True)
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        return RunnerError(f"openai: stream error: {_clip(exc.message)}", transient=True)
    return RunnerError(f"openai: {type(exc).__name__}", transient=False)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


class OpenAIRunner:
    """Streams Chat Completions from `settings.openai_base_url` (see the module docstring)."""

    name = "openai"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: AsyncOpenAI | None = None
        if self.configured:  # import the SDK now rather than on the event loop at first use
            importlib.import_module("openai")

    @property
    def configured(self) -> bool:
        return bool(self.settings.openai_base_url)

    def client(self) -> AsyncOpenAI:
        if self._client is None:
            if not self.configured:
                raise RunnerError("runner 'openai' is not configured", transient=False)
            from openai import AsyncOpenAI

            key = self.settings.openai_api_key
            self._client = AsyncOpenAI(
                base_url=self.settings.openai_base_url,
                api_key=key.get_secret_value() if key is not None else NO_API_KEY,
                max_retries=0,
                timeout=self.settings.openai_timeout_seconds,
            )
        return self._client

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def run(self, request: RunRequest, on_delta: OnDelta) -> Completion:
        import openai

        client = self.client()
        model = request.model or self.settings.openai_model
        options = {k: v for k, v in request.options.items() if k in ALLOWED_OPTIONS}
        collected = _Collector()
        try:
            if request.tools:
                options["tools"] = tool_params(request.tools)
            stream = await client.chat.completions.create(
                model=model,
                messages=chat_messages(request.messages),
                stream=True,
                stream_options={"include_usage": True},
                **options,
            )
            async with stream:  # closed on every exit, cancellation included
                async for chunk in stream:
                    text = collected.add(chunk)
                    if text:
                        await on_delta(text)
        except openai.OpenAIError as exc:
            raise runner_error(exc) from exc
        if not collected.finished:
            raise RunnerError("openai: the stream ended before the reply finished", transient=True)
        return Completion(
            text="".join(collected.text),
            usage=collected.usage,
            model=collected.model or model,
            tool_calls=collected.tool_calls(),
        )

    async def health(self) -> RunnerHealth:
        if not self.configured:
            return RunnerHealth(self.name, False, False, None, None, "closed", "not configured")
        import openai

        started = time.perf_counter()
        try:
            response = await self.client().models.with_raw_response.list(
                timeout=HEALTH_TIMEOUT_SECONDS
            )
        except openai.OpenAIError as exc:
            latency = (time.perf_counter() - started) * 1000
            detail = runner_error(exc).message
            return RunnerHealth(self.name, True, False, None, latency, "closed", detail)
        latency = (time.perf_counter() - started) * 1000
        version = next(
            (response.headers[h] for h in VERSION_HEADERS if h in response.headers), None
        )
        return RunnerHealth(self.name, True, True, version, latency, "closed")
