"""The `cli` runner: a configured command (e.g. a Gemini or Claude CLI) run per request.

- The command is `settings.cli_command` (split like a shell would, never run by one). Job input
  can never choose it; the option `timeout_s` may only shorten `settings.cli_timeout_seconds`.
- The prompt (see `render_prompt`) is the last argument (`cli_prompt_mode="argument"`; mind
  the OS limit of about 128 KiB per argument) or the whole of stdin (`"stdin"`).
- stdout is streamed as deltas while it arrives and is the completion's text; usage is
  estimated by word count. `request.model` is not passed on: put a model flag in the command.
- The command runs in a process group of its own. On timeout or cancellation the whole group
  is killed (SIGKILL), children included; so are stragglers left when the command exits.
- A non-zero exit is a transient `RunnerError` carrying the end of stderr: CLIs fail for rate
  limits and network errors as often as for anything else.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Mapping
from typing import Any

from agenthub.config import Settings
from agenthub.runners.base import (
    ChatMessage,
    Completion,
    OnDelta,
    RunnerError,
    RunnerHealth,
    RunRequest,
    Usage,
)
from agenthub.runners.echo import word_count

READ_SIZE = 4096
STDERR_TAIL_BYTES = 2048
VERSION_TIMEOUT_SECONDS = 5.0
DRAIN_SECONDS = 1.0  # reading what is left in the pipes once the group is gone
EXIT_POLL_SECONDS = 0.05


def render_prompt(messages: list[ChatMessage]) -> str:
    """The chat as one plain-text prompt: the system prompt(s) first, then the conversation.
    A lone user message is sent as is; a longer conversation as `role: content` paragraphs,
    so the CLI sees the history and answers the last message."""
    system = [m.content for m in messages if m.role == "system"]
    turns = [m for m in messages if m.role != "system"]
    if len(turns) == 1 and turns[0].role == "user":
        body = turns[0].content
    else:
        body = "\n\n".join(f"{m.role}: {m.content}" for m in turns)
    return "\n\n".join(part for part in [*system, body] if part)


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the group (gone already: nothing to do)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _StderrTail:
    """The last `STDERR_TAIL_BYTES` of a stream."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def collect(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(READ_SIZE):
            self.data += chunk
            del self.data[:-STDERR_TAIL_BYTES]

    def text(self) -> str:
        return self.data.decode("utf-8", errors="replace").strip()


class CliRunner:
    """Runs `settings.cli_command` per request (see the module docstring)."""

    name = "cli"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.command = shlex.split(settings.cli_command or "")

    @property
    def configured(self) -> bool:
        return bool(self.command)

    def timeout(self, options: Mapping[str, Any]) -> float:
        """The run's timeout: the setting, or the option `timeout_s` when that is lower."""
        limit = self.settings.cli_timeout_seconds
        value = options.get("timeout_s")
        if value is None:
            return limit
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise RunnerError("cli: option 'timeout_s' must be a positive number", transient=False)
        return min(float(value), limit)

    async def run(self, request: RunRequest, on_delta: OnDelta) -> Completion:
        if not self.configured:
            raise RunnerError("runner 'cli' is not configured", transient=False)
        if request.tools:
            raise RunnerError(
                "cli: a command-line model cannot call tools; give an agent with tools the "
                "openai or echo runner",
                transient=False,
            )
        timeout = self.timeout(request.options)
        prompt = render_prompt(request.messages)
        argv = [*self.command, prompt] if self.settings.cli_prompt_mode == "argument" else []
        proc = await self._spawn(argv or self.command, stdin=not argv)
        text: list[str] = []
        stderr = _StderrTail()
        try:
            async with asyncio.timeout(timeout):
                await self._communicate(proc, None if argv else prompt, text, stderr, on_delta)
        except TimeoutError:
            await self._reap(proc)
            raise RunnerError(f"cli: timed out after {timeout:g} s", transient=True) from None
        except BaseException:
            await self._reap(proc)
            raise
        output = "".join(text)
        if proc.returncode != 0:
            raise RunnerError(_exit_message(proc.returncode, stderr.text()), transient=True)
        return Completion(
            text=output,
            usage=Usage(prompt_tokens=word_count(prompt), completion_tokens=word_count(output)),
            model=request.model,
        )

    async def _spawn(self, argv: list[str], *, stdin: bool) -> asyncio.subprocess.Process:
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise RunnerError(f"cli: command not found: {argv[0]}", transient=False) from None
        except OSError as exc:  # not executable, argument too long, ...
            raise RunnerError(f"cli: cannot start: {exc.strerror}", transient=False) from None

    async def _communicate(
        self,
        proc: asyncio.subprocess.Process,
        prompt: str | None,
        text: list[str],
        stderr: _StderrTail,
        on_delta: OnDelta,
    ) -> None:
        """Feed stdin, stream stdout, keep stderr's tail; return once the command has exited
        and its leftover processes are killed."""
        assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - PIPE above
        tasks = [
            asyncio.ensure_future(proc.wait()),
            asyncio.ensure_future(stderr.collect(proc.stderr)),
        ]
        if prompt is not None and proc.stdin is not None:
            tasks.append(asyncio.ensure_future(_feed(proc.stdin, prompt)))
        try:
            await _stream(proc.stdout, text, on_delta, proc)
            await _exited(proc)
            kill_group(proc.pid)  # stragglers the command left behind
            await asyncio.wait(tasks, timeout=DRAIN_SECONDS)  # pipes closed, stderr read
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _reap(proc: asyncio.subprocess.Process) -> None:
        """Kill the command's group and wait for it (not forever: a process that left the
        group may hold the pipes open)."""
        kill_group(proc.pid)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_SECONDS):
                await proc.wait()

    async def health(self) -> RunnerHealth:
        if not self.configured:
            return RunnerHealth(self.name, False, False, None, None, "closed", "not configured")
        started = time.perf_counter()
        version: str | None = None
        detail: str | None = None
        reachable = False
        try:
            proc = await self._spawn([self.command[0], "--version"], stdin=False)
        except RunnerError as exc:
            detail = exc.message
        else:
            try:
                async with asyncio.timeout(VERSION_TIMEOUT_SECONDS):
                    out, err = await proc.communicate()
            except TimeoutError:
                detail = f"--version timed out after {VERSION_TIMEOUT_SECONDS:g} s"
            finally:
                await self._reap(proc)
            if detail is None:
                reachable = proc.returncode == 0
                lines = (out or err).decode("utf-8", errors="replace").strip().splitlines()
                version = lines[0].strip() if lines else None
                if not reachable:
                    detail = _exit_message(proc.returncode, err.decode(errors="replace").strip())
        latency = (time.perf_counter() - started) * 1000
        return RunnerHealth(self.name, True, reachable, version, latency, "closed", detail)


async def _stream(
    stdout: asyncio.StreamReader,
    text: list[str],
    on_delta: OnDelta,
    proc: asyncio.subprocess.Process,
) -> None:
    """Stream stdout as it arrives, decoded incrementally, to its end (see `_read`)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    exited = asyncio.ensure_future(_exited(proc))
    try:
        while True:
            chunk = await _read(stdout, exited, proc.pid)
            piece = decoder.decode(chunk, final=not chunk)
            if piece:
                text.append(piece)
                await on_delta(piece)
            if not chunk:
                return
    finally:
        exited.cancel()


async def _read(stdout: asyncio.StreamReader, exited: asyncio.Future[None], pgid: int) -> bytes:
    """The next chunk of stdout, or b"" at its end: EOF, or the command has exited and, once
    its group is killed, nothing more comes within `DRAIN_SECONDS` (a child that left the group
    may hold the pipe open)."""
    read = asyncio.ensure_future(stdout.read(READ_SIZE))
    try:
        pending: set[asyncio.Future[Any]] = {read, exited}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not read.done():
            kill_group(pgid)  # what the command left behind holds stdout open
            await asyncio.wait({read}, timeout=DRAIN_SECONDS)
    finally:
        if not read.done():
            read.cancel()
    return b"" if read.cancelled() else read.result()


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Until the command itself has exited (`Process.wait()` also waits for its pipes to
    close, which a child left behind may hold open)."""
    while proc.returncode is None:  # noqa: ASYNC110 - asyncio has no event for the exit alone
        await asyncio.sleep(EXIT_POLL_SECONDS)


async def _feed(stdin: asyncio.StreamWriter, prompt: str) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(prompt.encode())
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()


def _exit_message(returncode: int | None, stderr: str) -> str:
    if returncode is not None and returncode < 0:
        status = f"was killed by signal {-returncode}"
    else:
        status = f"exited with status {returncode}"
    return f"cli: command {status}" + (f": {stderr}" if stderr else "")
