"""The `echo` runner: deterministic and offline, for development and tests only.

It streams the last user message back word by word (each delta a word and the whitespace after
it, so the deltas join to the exact text) and takes these options:

- `delay_ms`: pause between chunks, so progress and cancellation can be seen;
- `fail_first`: attempts numbered up to this many fail with a transient error before
  streaming, so retries can be seen;
- `tool_calls`: `[{"name", "arguments"?, "tool_type"?}]`. Offered no tools, it reports them
  in the completion beside the echoed text. Offered tools, it plays a model that uses them:
  it makes these calls (and writes nothing) until the turns after the last user message hold
  tool results, then answers with those results, one per line.

Token usage is an approximation: words, not model tokens (prompt: every message's words;
completion: the words streamed).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from agenthub import __version__
from agenthub.runners.base import (
    ChatMessage,
    Completion,
    OnDelta,
    RunnerError,
    RunnerHealth,
    RunRequest,
    ToolCall,
    Usage,
)

MAX_DELAY_MS = 60_000
_CHUNK = re.compile(r"\s*\S+\s*|\s+")


def chunks(text: str) -> list[str]:
    """`text` as word chunks: each a word with the whitespace after it (leading whitespace goes
    with the first word); `"".join(chunks(text)) == text`."""
    return _CHUNK.findall(text)


def word_count(text: str) -> int:
    return len(text.split())


def last_user_message(messages: list[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user":
            return message.content
    return ""


class EchoRunner:
    """Echoes the prompt back; see the module docstring for its options."""

    name = "echo"

    async def run(self, request: RunRequest, on_delta: OnDelta) -> Completion:
        options = request.options
        delay = _delay_seconds(options)
        fail_first = _int_option(options, "fail_first")
        tool_calls = _tool_calls(options)
        if request.attempt <= fail_first:
            raise RunnerError(
                f"echo: attempt {request.attempt} fails on purpose (fail_first={fail_first})",
                transient=True,
            )
        if request.tools and tool_calls:
            results = _tool_results(request.messages)
            if not results:
                step = sum(1 for m in request.messages if m.role == "assistant" and m.tool_calls)
                return Completion(
                    text="",
                    usage=Usage(sum(word_count(m.content) for m in request.messages), 0),
                    model=request.model or self.name,
                    tool_calls=[
                        replace(c, id=f"call_echo_{step}_{i}") for i, c in enumerate(tool_calls)
                    ],
                )
            text, tool_calls = "\n".join(results), []
        else:
            text = last_user_message(request.messages)
        parts = chunks(text)
        for index, part in enumerate(parts):
            if index and delay:
                await asyncio.sleep(delay)
            await on_delta(part)
        return Completion(
            text="".join(parts),
            usage=Usage(
                prompt_tokens=sum(word_count(m.content) for m in request.messages),
                completion_tokens=sum(1 for part in parts if part.strip()),
            ),
            model=request.model or self.name,
            tool_calls=tool_calls,
        )

    async def health(self) -> RunnerHealth:
        started = time.perf_counter()
        await asyncio.sleep(0)
        return RunnerHealth(
            name=self.name,
            configured=True,
            reachable=True,
            version=__version__,
            latency_ms=(time.perf_counter() - started) * 1000,
            breaker="closed",
        )


def _tool_results(messages: list[ChatMessage]) -> list[str]:
    """The tool results after the last user message."""
    results: list[str] = []
    for message in reversed(messages):
        if message.role == "user":
            break
        if message.role == "tool":
            results.append(message.content)
    return results[::-1]


def _invalid(message: str) -> RunnerError:
    return RunnerError(f"echo: {message}", transient=False)


def _int_option(options: Mapping[str, Any], key: str) -> int:
    value = options.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _invalid(f"option {key!r} must be a non-negative integer")
    return value


def _delay_seconds(options: Mapping[str, Any]) -> float:
    value = options.get("delay_ms", 0)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _invalid("option 'delay_ms' must be a non-negative number")
    if value > MAX_DELAY_MS:
        raise _invalid(f"option 'delay_ms' must be at most {MAX_DELAY_MS}")
    return float(value) / 1000


def _tool_calls(options: Mapping[str, Any]) -> list[ToolCall]:
    raw = options.get("tool_calls", [])
    if not isinstance(raw, list):
        raise _invalid("option 'tool_calls' must be a list")
    calls: list[ToolCall] = []
    for index, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            raise _invalid(f"tool_calls[{index}] must be an object with a non-empty 'name'")
        tool_type = item.get("tool_type", "function")
        if not isinstance(tool_type, str):
            raise _invalid(f"tool_calls[{index}].tool_type must be a string")
        calls.append(
            ToolCall(
                name=item["name"],
                arguments=item.get("arguments", {}),
                id=f"call_echo_{index}",
                tool_type=tool_type,
            )
        )
    return calls
