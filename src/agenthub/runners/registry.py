"""`Runners`: the runners of one process, by name, each behind its own circuit breaker.

Build one from the settings at start-up (the app keeps it in `app.state.runners`, and the
in-process worker shares it) so that each runner name has one breaker per process:

    runners = Runners(settings)
    completion = await runners.get("openai").run(request, on_delta)
    ...
    await runners.aclose()
"""

from __future__ import annotations

import asyncio
from typing import get_args

from agenthub.config import RunnerName, Settings
from agenthub.runners.base import Runner, RunnerError, RunnerHealth
from agenthub.runners.cli import CliRunner
from agenthub.runners.echo import EchoRunner
from agenthub.runners.openai import OpenAIRunner
from agenthub.runners.resilience import CircuitBreaker, GuardedRunner

RUNNER_NAMES: tuple[RunnerName, ...] = get_args(RunnerName)


class Runners:
    """The `openai`, `cli` and `echo` runners configured by `settings`."""

    names = RUNNER_NAMES

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.openai = OpenAIRunner(settings)
        self.cli = CliRunner(settings)
        self.echo = EchoRunner()
        self._guarded: dict[str, GuardedRunner] = {
            runner.name: GuardedRunner(
                runner,
                CircuitBreaker(
                    settings.runner_breaker_failures, settings.runner_breaker_reset_seconds
                ),
            )
            for runner in (self.openai, self.cli, self.echo)
        }

    @property
    def default(self) -> str:
        """The name of the runner used when a job names none (`AGENTHUB_DEFAULT_RUNNER`)."""
        return self.settings.default_runner

    def configured(self, name: str) -> bool:
        if name == "openai":
            return self.openai.configured
        if name == "cli":
            return self.cli.configured
        return name == "echo"

    def get(self, name: str) -> Runner:
        """The runner `name` behind its breaker; a non-transient `RunnerError` when the name
        is unknown or the runner is not configured."""
        if not self.configured(name):
            raise RunnerError(f"runner {name!r} is not configured", transient=False)
        return self._guarded[name]

    async def health(self) -> list[RunnerHealth]:
        """Every runner's health, probed concurrently, in `names` order."""
        return list(await asyncio.gather(*(self._health(name) for name in self.names)))

    async def _health(self, name: str) -> RunnerHealth:
        guarded = self._guarded[name]
        try:
            return await guarded.health()
        except Exception as exc:  # a probe never fails the report
            return RunnerHealth(
                name=name,
                configured=self.configured(name),
                reachable=False,
                version=None,
                latency_ms=None,
                breaker=guarded.breaker.state,
                detail=f"health probe failed: {type(exc).__name__}",
            )

    async def aclose(self) -> None:
        """Release the runners' connections (call at shutdown)."""
        await self.openai.aclose()
