"""Response bodies of `/v1/runners`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from agenthub.config import RunnerName


class RunnerHealthOut(BaseModel):
    name: RunnerName
    configured: bool = Field(description="Whether the runner is set up in the settings")
    reachable: bool = Field(description="Whether the probe reached a working backend")
    version: str | None = Field(description="The CLI's `--version`, the server's, or agenthub's")
    latency_ms: float | None = Field(description="How long the probe took")
    breaker: Literal["closed", "open", "half_open"] = Field(
        description="The runner's circuit breaker: `open` fails runs fast"
    )
    detail: str | None = Field(description="Why the runner is not configured or not reachable")


class RunnersHealth(BaseModel):
    data: list[RunnerHealthOut]
