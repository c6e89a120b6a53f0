"""Retry pacing and the circuit breaker (with an injected clock; real runners behind it)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest

from agenthub.runners.base import ChatMessage, RunnerError, RunRequest
from agenthub.runners.echo import EchoRunner
from agenthub.runners.resilience import (
    CircuitBreaker,
    GuardedRunner,
    backoff_delay,
    parse_retry_after,
)


def state(breaker: CircuitBreaker) -> str:
    return breaker.state  # a call, so type checkers do not narrow the property


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def ignore(_: str) -> None:
    return None


async def cancel_midway(guarded: GuardedRunner) -> None:
    """Start a slow run, cancel it once it streams, and see it cancelled."""
    started = asyncio.Event()

    async def on_delta(_: str) -> None:
        started.set()

    task = asyncio.create_task(guarded.run(ask(delay_ms=60_000), on_delta))
    await asyncio.wait_for(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def ask(attempt: int = 1, **options: object) -> RunRequest:
    return RunRequest([ChatMessage("user", "hello there")], options=dict(options), attempt=attempt)


FAILING = ask(fail_first=1000)  # the echo runner fails it transiently


@pytest.mark.parametrize("attempt", range(1, 12))
def test_backoff_stays_within_full_jitter_bounds(attempt: int) -> None:
    ceiling = min(60.0, 0.5 * 2 ** (attempt - 1))
    delays = [backoff_delay(attempt, base=0.5, cap=60.0) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > ceiling / 4  # jittered over the range, not stuck at zero


def test_retry_after_is_a_floor() -> None:
    assert backoff_delay(1, base=1, cap=2, retry_after=7) == 7
    assert all(3 <= backoff_delay(6, base=1, cap=30, retry_after=3) <= 30 for _ in range(100))


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    def parse(**headers: str) -> float | None:
        return parse_retry_after(httpx.Headers(headers), now=lambda: now)

    assert parse(**{"Retry-After": "2"}) == 2.0
    assert parse(**{"retry-after": "0.5"}) == 0.5
    assert parse(**{"Retry-After-Ms": "1500", "Retry-After": "9"}) == 1.5
    assert parse(**{"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}) == 30.0
    assert parse(**{"Retry-After": "Thu, 01 Jan 2026 11:00:00 GMT"}) == 0.0  # in the past
    assert parse(**{"Retry-After": "-5"}) == 0.0
    assert parse(**{"Retry-After": "soon"}) is None
    assert parse(**{"Retry-After": "nan"}) is None
    assert parse() is None


def test_breaker_opens_fails_fast_then_probes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_seconds=30, clock=clock)
    for _ in range(2):
        breaker.acquire()
        breaker.failure()
    assert state(breaker) == "closed"
    breaker.acquire()
    breaker.failure()
    assert state(breaker) == "open"

    clock.now += 10
    with pytest.raises(RunnerError) as caught:
        breaker.acquire()
    assert caught.value.transient is True
    assert caught.value.retry_after == pytest.approx(20)

    clock.now += 20
    assert state(breaker) == "half_open"
    breaker.acquire()  # the probe
    with pytest.raises(RunnerError):
        breaker.acquire()  # only one probe at a time
    breaker.success()
    assert state(breaker) == "closed"
    breaker.acquire()


def test_a_failed_probe_reopens_for_a_full_period() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=1, reset_seconds=5, clock=clock)
    breaker.acquire()
    breaker.failure()
    clock.now += 5
    breaker.acquire()
    breaker.failure()

    assert state(breaker) == "open"
    with pytest.raises(RunnerError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == pytest.approx(5)


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failures=2, reset_seconds=5, clock=Clock())
    for _ in range(5):
        breaker.acquire()
        breaker.failure()
        breaker.acquire()
        breaker.success()
    assert state(breaker) == "closed"


async def test_guarded_runner_counts_transient_failures_only() -> None:
    clock = Clock()
    guarded = GuardedRunner(EchoRunner(), CircuitBreaker(failures=2, reset_seconds=30, clock=clock))

    with pytest.raises(RunnerError):
        await guarded.run(FAILING, ignore)
    for _ in range(3):  # a permanent error: the backend answered
        with pytest.raises(RunnerError) as caught:
            await guarded.run(ask(delay_ms=-1), ignore)
        assert caught.value.transient is False
    await cancel_midway(guarded)  # a cancellation says nothing about the backend
    assert state(guarded.breaker) == "closed"
    assert (await guarded.health()).breaker == "closed"

    with pytest.raises(RunnerError):
        await guarded.run(FAILING, ignore)
    assert (await guarded.health()).breaker == "open"
    with pytest.raises(RunnerError) as caught:
        await guarded.run(ask(), ignore)  # would succeed, but the circuit is open
    assert caught.value.message.startswith("circuit open")
    assert caught.value.retry_after == pytest.approx(30)

    clock.now += 30
    assert (await guarded.health()).breaker == "half_open"
    completion = await guarded.run(ask(), ignore)
    assert completion.text == "hello there"
    assert state(guarded.breaker) == "closed"


async def test_a_cancelled_probe_lets_the_next_call_probe() -> None:
    clock = Clock()
    guarded = GuardedRunner(EchoRunner(), CircuitBreaker(failures=1, reset_seconds=1, clock=clock))
    with pytest.raises(RunnerError):
        await guarded.run(FAILING, ignore)
    clock.now += 1

    await cancel_midway(guarded)  # the probe

    assert (await guarded.run(ask(), ignore)).text == "hello there"
    assert state(guarded.breaker) == "closed"
