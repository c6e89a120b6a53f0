"""The `openai` runner against a real loopback server speaking the Chat Completions protocol."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agenthub.config import Settings
from agenthub.runners.base import ChatMessage, RunnerError, RunRequest, ToolCall, ToolSpec
from agenthub.runners.openai import OpenAIRunner
from processes import free_port
from runners.openai_server import (
    SERVER_VERSION,
    Behaviour,
    OpenAIServer,
    failing,
    rate_limited,
    reply,
)

API_KEY = "sk-test-do-not-leak-0123456789"


def openai_settings(base_url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "openai_base_url": base_url,
        "openai_api_key": API_KEY,
        "openai_model": "loopback-model",
        "openai_timeout_seconds": 5,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
async def server() -> AsyncIterator[OpenAIServer]:
    async with OpenAIServer() as s:
        yield s


@pytest.fixture
async def runner(server: OpenAIServer) -> AsyncIterator[OpenAIRunner]:
    r = OpenAIRunner(openai_settings(server.base_url))
    yield r
    await r.aclose()


def ask(text: str, **kwargs: Any) -> RunRequest:
    return RunRequest(messages=[ChatMessage("user", text)], **kwargs)


class Deltas:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.first = asyncio.Event()

    async def __call__(self, text: str) -> None:
        self.parts.append(text)
        self.first.set()


async def failure(runner: OpenAIRunner, request: RunRequest) -> RunnerError:
    with pytest.raises(RunnerError) as caught:
        await runner.run(request, Deltas())
    assert API_KEY not in str(caught.value)
    return caught.value


async def test_streams_the_reply_and_records_usage(
    runner: OpenAIRunner, server: OpenAIServer
) -> None:
    server.then(reply("The quick brown fox jumps.", usage=(21, 5)))
    deltas = Deltas()
    request = RunRequest(
        messages=[
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Say something."),
            ChatMessage("assistant", "Something."),
            ChatMessage("tool", '{"temp": 21}'),
            ChatMessage("user", "Again."),
        ]
    )

    completion = await runner.run(request, deltas)

    assert deltas.parts == ["The", " quick", " brown", " fox", " jumps."]
    assert completion.text == "The quick brown fox jumps."
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (21, 5)
    assert completion.model == "loopback-model"
    assert completion.tool_calls == []
    (sent,) = server.chats
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.body["model"] == "loopback-model"
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say something."},
        {"role": "assistant", "content": "Something."},
        {"role": "user", "content": 'Tool result:\n{"temp": 21}'},
        {"role": "user", "content": "Again."},
    ]


async def test_model_and_known_options_are_sent_unknown_ones_are_not(
    runner: OpenAIRunner, server: OpenAIServer
) -> None:
    options = {"temperature": 0.2, "max_tokens": 50, "top_p": 0.9, "delay_ms": 5, "cmd": "x"}

    completion = await runner.run(ask("Hi", model="other-model", options=options), Deltas())

    assert completion.model == "other-model"
    (sent,) = server.chats
    assert sent.body["model"] == "other-model"
    assert {k: sent.body.get(k) for k in ("temperature", "max_tokens", "top_p")} == {
        "temperature": 0.2,
        "max_tokens": 50,
        "top_p": 0.9,
    }
    assert "delay_ms" not in sent.body and "cmd" not in sent.body


async def test_tool_calls_are_assembled_from_split_chunks(
    runner: OpenAIRunner, server: OpenAIServer
) -> None:
    server.then(
        reply(
            "",
            tool_calls=[
                ("get_weather", '{"city": "Paris", "units": ["C", "F"]}'),
                ("search", "not json {"),
            ],
        )
    )
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]

    completion = await runner.run(ask("Weather?", options={"tools": tools}), Deltas())

    assert completion.text == ""
    assert completion.tool_calls == [
        ToolCall("get_weather", {"city": "Paris", "units": ["C", "F"]}, "call_0", "function"),
        ToolCall("search", "not json {", "call_1", "function"),
    ]
    assert server.chats[0].body["tools"] == tools


async def test_tools_and_paired_tool_turns_are_sent_in_the_api_shape(
    runner: OpenAIRunner, server: OpenAIServer
) -> None:
    server.then(reply("It is 21 degrees in Paris."))
    weather = {"type": "object", "properties": {"city": {"type": "string"}}}
    call = ToolCall("get_weather", {"city": "Paris"}, "call_a")
    request = RunRequest(
        messages=[
            ChatMessage("user", "Weather in Paris?"),
            ChatMessage("assistant", "", tool_calls=(call, ToolCall("clock", "not json", "b"))),
            ChatMessage("tool", '{"temp": 21}', tool_call_id="call_a"),
            ChatMessage("tool", "12:00", tool_call_id="b"),
        ],
        tools=[ToolSpec("get_weather", "Current weather", weather), ToolSpec("clock", None, {})],
    )

    completion = await runner.run(request, Deltas())

    assert completion.text == "It is 21 degrees in Paris."
    (sent,) = server.chats
    assert sent.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": weather,
                "description": "Current weather",
            },
        },
        {"type": "function", "function": {"name": "clock", "parameters": {}}},
    ]
    assert sent.body["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "b",
                    "type": "function",
                    "function": {"name": "clock", "arguments": "not json"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "b", "content": "12:00"},
    ]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"Retry-After": "2"}, 2.0), ({"retry-after-ms": "1500"}, 1.5), ({}, None)],
)
async def test_rate_limit_is_transient_with_retry_after(
    runner: OpenAIRunner,
    server: OpenAIServer,
    headers: dict[str, str],
    expected: float | None,
) -> None:
    server.then(Behaviour(status=429, headers=headers))

    error = await failure(runner, ask("Hi"))

    assert error.transient is True
    assert error.retry_after == expected
    assert "429" in error.message
    assert len(server.chats) == 1  # the SDK did not retry on its own


@pytest.mark.parametrize(("status", "transient"), [(500, True), (503, True), (408, True),
                                                   (409, True), (400, False), (401, False),
                                                   (404, False)])  # fmt: skip
async def test_status_errors_are_transient_or_not(
    runner: OpenAIRunner, server: OpenAIServer, status: int, transient: bool
) -> None:
    server.then(failing(status))

    error = await failure(runner, ask("Hi"))

    assert error.transient is transient
    assert f"HTTP {status}" in error.message
    assert len(server.chats) == 1


async def test_a_rate_limit_then_a_reply_is_two_requests(
    runner: OpenAIRunner, server: OpenAIServer
) -> None:
    server.then(rate_limited("2"), reply("ok"))

    assert (await failure(runner, ask("Hi"))).retry_after == 2.0
    assert (await runner.run(ask("Hi"), Deltas())).text == "ok"


@pytest.mark.parametrize("ending", ["drop", "truncate"])
async def test_a_stream_that_ends_early_is_a_transient_failure(
    runner: OpenAIRunner, server: OpenAIServer, ending: str
) -> None:
    server.then(Behaviour(text="one two three four five six seven eight", ending=ending))  # type: ignore[arg-type]

    error = await failure(runner, ask("Hi"))

    assert error.transient is True


async def test_an_unreachable_server_is_a_transient_failure() -> None:
    runner = OpenAIRunner(openai_settings(f"http://127.0.0.1:{free_port()}/v1"))
    try:
        error = await failure(runner, ask("Hi"))
        assert error.transient is True
        health = await runner.health()
    finally:
        await runner.aclose()
    assert (health.configured, health.reachable) == (True, False)
    assert health.detail is not None and "connection" in health.detail


async def test_cancelling_the_run_closes_the_stream_within_a_second(
    runner: OpenAIRunner, server: OpenAIServer
) -> None:
    server.then(reply(" ".join(f"w{i}" for i in range(200)), delay=0.2))
    deltas = Deltas()
    task = asyncio.create_task(runner.run(ask("Go slowly"), deltas))
    await asyncio.wait_for(deltas.first.wait(), 5)

    cancelled_at = time.monotonic()
    task.cancel()
    await asyncio.wait_for(server.disconnected.wait(), 5)
    elapsed = time.monotonic() - cancelled_at

    assert elapsed < 1.0
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(deltas.parts) < 200
    # The runner is still usable afterwards.
    assert (await runner.run(ask("Hi"), Deltas())).text


async def test_health_lists_models_and_reports_the_server_version(
    runner: OpenAIRunner, server: OpenAIServer
) -> None:
    health = await runner.health()

    assert (health.name, health.configured, health.reachable) == ("openai", True, True)
    assert health.version == SERVER_VERSION
    assert health.latency_ms is not None and health.latency_ms > 0
    assert [r.path for r in server.requests] == ["/v1/models"]


async def test_not_configured() -> None:
    runner = OpenAIRunner(openai_settings(None))

    health = await runner.health()
    with pytest.raises(RunnerError) as caught:
        await runner.run(ask("Hi"), Deltas())

    assert (health.configured, health.reachable) == (False, False)
    assert caught.value.transient is False
