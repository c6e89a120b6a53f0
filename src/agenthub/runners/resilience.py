"""Retry pacing (exponential backoff with full jitter, honouring a server's `Retry-After`) and
a per-runner circuit breaker."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

from agenthub.runners.base import (
    Completion,
    OnDelta,
    Runner,
    RunnerError,
    RunnerHealth,
    RunRequest,
)


def backoff_delay(
    attempt: int, *, base: float, cap: float, retry_after: float | None = None
) -> float:
    """Seconds to wait before retry number `attempt` (from 1): uniform in
    `[0, min(cap, base * 2**(attempt-1))]` ("full jitter"), and never less than `retry_after`."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not cryptography
    return max(delay, retry_after or 0.0)


def parse_retry_after(
    headers: Mapping[str, str], now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> float | None:
    """Seconds a server asked us to wait: `retry-after-ms`, else `Retry-After` as seconds or as
    an HTTP date; None when absent or unreadable; never negative. `headers` must look names up
    case-insensitively (as httpx's do)."""
    millis = _number(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - now()).total_seconds(), 0.0)


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return max(number, 0.0) if math.isfinite(number) else None


BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Fail fast while a backend keeps failing.

    `closed`: calls go through; `failures` consecutive transient failures open the circuit.
    `open`: calls fail at once with a transient `RunnerError` whose `retry_after` is the time
    left until `reset_seconds` have passed since opening. Then `half_open`: one call (the probe)
    goes through; its success closes the circuit, its transient failure re-opens it.
    Non-transient errors (the backend answered) and cancellations count neither way.
    """

    def __init__(
        self, failures: int, reset_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if failures < 1 or reset_seconds <= 0:
            raise ValueError("failures must be >= 1 and reset_seconds > 0")
        self.failures = failures
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._probing or self._clock() - self._opened_at >= self.reset_seconds:
            return "half_open"
        return "open"

    def acquire(self) -> None:
        """Admit one call or raise `RunnerError` (transient) when the circuit is open."""
        if self._opened_at is None:
            return
        remaining = self._opened_at + self.reset_seconds - self._clock()
        if remaining > 0:
            raise RunnerError(
                f"circuit open after {self._consecutive} consecutive failures",
                transient=True,
                retry_after=remaining,
            )
        if self._probing:
            raise RunnerError(
                "circuit half-open: a probe call is in flight",
                transient=True,
                retry_after=self.reset_seconds,
            )
        self._probing = True

    def success(self) -> None:
        """The admitted call succeeded: close the circuit."""
        self._consecutive = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        """The admitted call failed transiently: count it; open (or re-open) the circuit."""
        self._consecutive += 1
        if self._probing or self._consecutive >= self.failures:
            self._opened_at = self._clock()
        self._probing = False

    def release(self) -> None:
        """The admitted call ended without a verdict (cancelled, or a non-transient error)."""
        self._probing = False


class GuardedRunner:
    """A `Runner` whose calls go through a `CircuitBreaker`; its health reports the state."""

    def __init__(self, runner: Runner, breaker: CircuitBreaker) -> None:
        self.runner = runner
        self.breaker = breaker
        self.name = runner.name

    async def run(self, request: RunRequest, on_delta: OnDelta) -> Completion:
        self.breaker.acquire()
        try:
            completion = await self.runner.run(request, on_delta)
        except RunnerError as exc:
            if exc.transient:
                self.breaker.failure()
            else:
                self.breaker.release()
            raise
        except BaseException:
            self.breaker.release()
            raise
        self.breaker.success()
        return completion

    async def health(self) -> RunnerHealth:
        health = await self.runner.health()
        return replace(health, breaker=self.breaker.state)
