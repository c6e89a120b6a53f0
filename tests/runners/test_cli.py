"""The `cli` runner driving a real process (`llm_cli.py`, a stand-in for an LLM CLI)."""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from agenthub.config import Settings
from agenthub.runners.base import ChatMessage, RunnerError, RunRequest, ToolSpec
from agenthub.runners.cli import CliRunner, render_prompt
from runners.llm_cli import VERSION, install

LLM_CLI = str(Path(__file__).with_name("llm_cli.py"))
COMMAND = shlex.join([sys.executable, LLM_CLI])
# A CLI that leaves a child behind: `sh` starts `sleep` in the background, then the tool.
SPAWNING = shlex.join(["sh", "-c", f'sleep 100 & {COMMAND} "$@"', "sh"])


def runner(command: str | None = COMMAND, **overrides: Any) -> CliRunner:
    values: dict[str, Any] = {"cli_command": command, "cli_timeout_seconds": 30, **overrides}
    return CliRunner(Settings(_env_file=None, **values))


def ask(text: str, **options: Any) -> RunRequest:
    return RunRequest(messages=[ChatMessage("user", text)], options=options)


class Deltas:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.arrived = asyncio.Event()

    async def __call__(self, text: str) -> None:
        self.parts.append(text)
        self.arrived.set()

    async def pid(self) -> int:
        """The pid a HANG prompt makes the tool print."""
        while not "".join(self.parts).endswith("\n"):
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 10)
        return int("".join(self.parts).split()[1])


def live_members(pgid: int) -> list[int]:
    """Processes of the group that still run (zombies waiting for init to reap them are dead)."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


async def until_gone(pgid: int, within: float) -> float:
    """Seconds until no process of the group runs; fails after `within`."""
    started = time.monotonic()
    while live_members(pgid):
        assert time.monotonic() - started < within, f"group {pgid} still runs"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def until_reaped(pgid: int) -> None:
    """The group no longer exists at all (`killpg(pgid, 0)` fails) once its zombies are
    reaped; how soon depends on the machine's init, so this only waits generously."""
    deadline = time.monotonic() + 30
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, f"group {pgid} never went away"
        await asyncio.sleep(0.05)


async def test_streams_stdout_as_it_arrives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_CLI_DELAY", "0.01")
    monkeypatch.setenv("LLM_CLI_CHUNK", "1")  # splits multi-byte characters across writes
    prompt = "Grüße aus Köln ✓ — 東京 🚀 done"
    deltas = Deltas()

    completion = await runner().run(ask(prompt), deltas)

    assert completion.text == prompt
    assert "".join(deltas.parts) == prompt
    assert len(deltas.parts) > 3
    assert "\ufffd" not in completion.text
    assert completion.usage.prompt_tokens == completion.usage.completion_tokens == 8


async def test_the_prompt_can_go_on_stdin() -> None:
    messages = [
        ChatMessage("system", "You are terse."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello."),
        ChatMessage("user", "Long one: " + "x" * 1_000_000),  # more than any pipe buffer
    ]

    completion = await runner(cli_prompt_mode="stdin").run(RunRequest(messages), Deltas())

    assert completion.text == render_prompt(messages)


def test_render_prompt() -> None:
    assert render_prompt([ChatMessage("user", "Just this")]) == "Just this"
    assert render_prompt([ChatMessage("system", "Be kind."), ChatMessage("user", "Hi")]) == (
        "Be kind.\n\nHi"
    )
    conversation = [
        ChatMessage("system", "Be kind."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello!"),
        ChatMessage("user", "Bye"),
    ]
    assert render_prompt(conversation) == "Be kind.\n\nuser: Hi\n\nassistant: Hello!\n\nuser: Bye"


async def test_a_failing_command_is_transient_with_its_stderr() -> None:
    with pytest.raises(RunnerError) as caught:
        await runner().run(ask("please FAIL"), Deltas())

    assert caught.value.transient is True
    assert "status 3" in caught.value.message
    assert "quota exceeded" in caught.value.message


async def test_options_cannot_choose_the_command() -> None:
    options = {"command": "sh -c 'echo pwned'", "cli_command": "echo pwned"}

    completion = await runner().run(ask("hello", **options), Deltas())

    assert completion.text == "hello"


@pytest.mark.parametrize(
    ("setting", "option"), [(0.5, None), (30, 0.5), (0.5, 1000)], ids=["setting", "lower", "higher"]
)
async def test_timeout_kills_the_process_group(setting: float, option: float | None) -> None:
    options = {} if option is None else {"timeout_s": option}
    deltas = Deltas()
    run = asyncio.create_task(
        runner(cli_timeout_seconds=setting).run(ask("HANG", **options), deltas)
    )
    pid = await deltas.pid()

    with pytest.raises(RunnerError) as caught:
        await asyncio.wait_for(run, 10)

    assert caught.value.transient is True
    assert "timed out after 0.5 s" in caught.value.message
    await until_gone(pid, within=5)


async def test_tools_are_refused_with_what_to_do() -> None:
    request = RunRequest([ChatMessage("user", "hi")], tools=[ToolSpec("search", None, {})])
    with pytest.raises(RunnerError) as caught:
        await runner().run(request, Deltas())
    assert caught.value.transient is False
    assert "cannot call tools" in caught.value.message


async def test_an_invalid_timeout_option_is_refused() -> None:
    with pytest.raises(RunnerError) as caught:
        await runner().run(ask("hi", timeout_s="soon"), Deltas())
    assert caught.value.transient is False


async def test_cancelling_kills_the_group_children_included_within_a_second() -> None:
    deltas = Deltas()
    run = asyncio.create_task(runner(SPAWNING).run(ask("HANG"), deltas))
    pgid = os.getpgid(await deltas.pid())
    assert len(live_members(pgid)) == 3  # sh, sleep and the tool

    cancelled_at = time.monotonic()
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    elapsed = time.monotonic() - cancelled_at + await until_gone(pgid, within=5)

    assert elapsed < 1.0
    await until_reaped(pgid)


async def test_children_left_behind_do_not_hold_up_the_reply() -> None:
    # The tool exits but its backgrounded `sleep 100` keeps stdout open.
    completion = await runner(SPAWNING, cli_timeout_seconds=20).run(ask("done now"), Deltas())

    assert completion.text == "done now"


async def test_a_missing_command_is_not_transient() -> None:
    missing = runner("/nonexistent/llm --flag")

    with pytest.raises(RunnerError) as caught:
        await missing.run(ask("hi"), Deltas())
    health = await missing.health()

    assert caught.value.transient is False
    assert "not found" in caught.value.message
    assert (health.configured, health.reachable, health.version) == (True, False, None)
    assert health.detail is not None and "not found" in health.detail


async def test_health_reports_the_version(tmp_path: Path) -> None:
    health = await runner(shlex.quote(str(install(tmp_path)))).health()

    assert (health.name, health.configured, health.reachable) == ("cli", True, True)
    assert health.version == VERSION
    assert health.latency_ms is not None and health.latency_ms > 0


async def test_not_configured() -> None:
    unset = runner(None)

    health = await unset.health()
    with pytest.raises(RunnerError) as caught:
        await unset.run(ask("hi"), Deltas())

    assert (health.configured, health.reachable) == (False, False)
    assert caught.value.transient is False
