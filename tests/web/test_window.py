"""In-memory moving windows (`web.window`) count as the `limits` library's moving window."""

from __future__ import annotations

import random

import pytest
from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from agenthub.web import window
from agenthub.web.window import MemoryWindows


class Clock:
    """`time.time` for both implementations, moved by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1_000_000.0
        monkeypatch.setattr("time.time", lambda: self.now)


async def test_hits_and_window_stats_match_the_limits_librarys_moving_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(monkeypatch)
    ours = MemoryWindows()
    reference = MovingWindowRateLimiter(MemoryStorage())
    items = [parse("3/second"), parse("5/10 seconds")]
    draw = random.Random(7)
    refused = 0
    for _ in range(600):
        # Random steps: `limits` counts a hit exactly one expiry old in a hit, not in its stats.
        clock.now += draw.choice((0.0, 0.05, 0.2, 0.7, 1.5, 4.0, 11.0)) * draw.uniform(0.9, 1.1)
        item = draw.choice(items)
        key = draw.choice(("ip", "user"))
        record = draw.random() < 0.8  # else a peek: would one more hit be allowed?
        allowed, stats = await ours.count(item, (key, "sessions"), record=record)
        if record:
            assert allowed == await reference.hit(item, key, "sessions")
        else:
            assert allowed == await reference.test(item, key, "sessions")
        refused += not allowed
        expected = await reference.get_window_stats(item, key, "sessions")
        assert stats.remaining == expected.remaining
        if stats.remaining < item.amount:  # an empty window resets a full expiry from now
            assert stats.reset_time == expected.reset_time
    assert 0 < refused < 600  # both answers were given


async def test_a_full_window_refuses_until_its_oldest_hit_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(monkeypatch)
    windows = MemoryWindows()
    item = parse("2/minute")
    assert (await windows.count(item, ("k",), record=True))[0]
    clock.now += 30
    assert (await windows.count(item, ("k",), record=True))[0]
    allowed, stats = await windows.count(item, ("k",), record=True)
    assert not allowed  # and refused hits are not recorded:
    assert (stats.reset_time, stats.remaining) == (clock.now + 30, 0)
    clock.now += 30.5
    assert (await windows.count(item, ("k",), record=False))[0]
    assert (await windows.count(item, ("k",), record=True))[0]
    assert not (await windows.count(item, ("k",), record=True))[0]


async def test_idle_keys_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(monkeypatch)
    windows = MemoryWindows()
    minute, hour = parse("5/minute"), parse("5/hour")
    for n in range(50):
        await windows.count(minute, ("ip", str(n)), record=True)
    await windows.count(hour, ("user", "u"), record=True)
    clock.now += window.SWEEP_SECONDS + 1
    await windows.count(minute, ("ip", "new"), record=True)
    assert set(windows._windows) == {(5, 3600, "user", "u"), (5, 60, "ip", "new")}
