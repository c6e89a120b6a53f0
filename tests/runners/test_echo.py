"""The `echo` runner: deterministic streaming, scripted failures and tool calls."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agenthub import __version__
from agenthub.runners.base import ChatMessage, RunnerError, RunRequest, ToolCall, ToolSpec
from agenthub.runners.echo import EchoRunner, chunks


class Deltas:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.arrived = asyncio.Event()

    async def __call__(self, text: str) -> None:
        self.parts.append(text)
        self.arrived.set()


def ask(text: str, *, attempt: int = 1, **options: Any) -> RunRequest:
    return RunRequest(messages=[ChatMessage("user", text)], options=options, attempt=attempt)


async def test_streams_the_last_user_message_word_by_word() -> None:
    request = RunRequest(
        messages=[
            ChatMessage("system", "You echo."),
            ChatMessage("user", "first question"),
            ChatMessage("assistant", "first answer"),
            ChatMessage("user", "Hello  big\nworld "),
        ],
        model="my-model",
    )
    deltas = Deltas()

    completion = await EchoRunner().run(request, deltas)

    assert deltas.parts == ["Hello  ", "big\n", "world "]
    assert completion.text == "Hello  big\nworld "
    assert completion.model == "my-model"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (9, 3)
    assert completion.tool_calls == []


@pytest.mark.parametrize("text", ["", " ", "  lead and trail  ", "one", "a\tb\n\nc", "ünï cödé ✓"])
def test_chunks_join_back_to_the_text(text: str) -> None:
    assert "".join(chunks(text)) == text
    assert all(part.strip() for part in chunks(text)) or not text.strip()


async def test_no_user_message_streams_nothing() -> None:
    deltas = Deltas()
    completion = await EchoRunner().run(RunRequest([ChatMessage("system", "x")]), deltas)
    assert (completion.text, deltas.parts) == ("", [])


async def test_fail_first_fails_that_many_attempts_transiently() -> None:
    runner = EchoRunner()
    for attempt in (1, 2):
        deltas = Deltas()
        with pytest.raises(RunnerError) as caught:
            await runner.run(ask("retry me", attempt=attempt, fail_first=2), deltas)
        assert caught.value.transient is True
        assert deltas.parts == []  # it fails before streaming

    completion = await runner.run(ask("retry me", attempt=3, fail_first=2), Deltas())
    assert completion.text == "retry me"


async def test_tool_calls_are_reported() -> None:
    tool_calls = [
        {"name": "search", "arguments": {"q": "cats"}},
        {"name": "shell", "tool_type": "command"},
    ]

    completion = await EchoRunner().run(ask("use tools", tool_calls=tool_calls), Deltas())

    assert completion.tool_calls == [
        ToolCall("search", {"q": "cats"}, "call_echo_0", "function"),
        ToolCall("shell", {}, "call_echo_1", "command"),
    ]


async def test_offered_tools_it_calls_them_then_answers_with_their_results() -> None:
    tools = [ToolSpec("search", "Search the web", {"type": "object"})]
    options = {"tool_calls": [{"name": "search", "arguments": {"q": "cats"}}]}
    asked = [ChatMessage("user", "find cats")]
    deltas = Deltas()

    first = await EchoRunner().run(RunRequest(asked, options=options, tools=tools), deltas)

    assert (first.text, deltas.parts) == ("", [])
    assert first.tool_calls == [ToolCall("search", {"q": "cats"}, "call_echo_0_0", "function")]
    answered = [
        *asked,
        ChatMessage("assistant", "", tool_calls=tuple(first.tool_calls)),
        ChatMessage("tool", "3 cats found", tool_call_id="call_echo_0_0"),
    ]
    second = await EchoRunner().run(RunRequest(answered, options=options, tools=tools), deltas)

    assert (second.text, second.tool_calls) == ("3 cats found", [])
    assert "".join(deltas.parts) == "3 cats found"
    again = [*answered, ChatMessage("user", "and dogs?")]
    third = await EchoRunner().run(RunRequest(again, options=options, tools=tools), Deltas())
    assert [call.id for call in third.tool_calls] == ["call_echo_1_0"]


@pytest.mark.parametrize(
    "options",
    [
        {"delay_ms": -1},
        {"delay_ms": "slow"},
        {"delay_ms": 10**9},
        {"fail_first": 1.5},
        {"fail_first": True},
        {"tool_calls": {"name": "x"}},
        {"tool_calls": [{"arguments": {}}]},
        {"tool_calls": [{"name": "x", "tool_type": 3}]},
    ],
)
async def test_invalid_options_are_permanent_errors(options: dict[str, Any]) -> None:
    with pytest.raises(RunnerError) as caught:
        await EchoRunner().run(ask("hi", **options), Deltas())
    assert caught.value.transient is False


async def test_delay_makes_progress_visible_and_the_run_cancellable() -> None:
    deltas = Deltas()
    task = asyncio.create_task(EchoRunner().run(ask("one two three four", delay_ms=60_000), deltas))
    await asyncio.wait_for(deltas.arrived.wait(), 5)

    assert deltas.parts == ["one "]  # the rest waits for the delay
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert deltas.parts == ["one "]


async def test_health() -> None:
    health = await EchoRunner().health()

    assert (health.name, health.configured, health.reachable) == ("echo", True, True)
    assert health.version == __version__
    assert health.latency_ms is not None and health.latency_ms >= 0
