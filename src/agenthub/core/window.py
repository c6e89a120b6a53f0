"""Moving-window counters in process memory, with the semantics of the `limits` library's
moving window (its memory storage aside).

`limits`' memory storage inserts every hit at the front of a list (a copy of the whole window
per hit) and, after every hit, starts a task that hands each key's window to a thread to trim
it: under load that thread competed with the event loop for the GIL and cost more than the
request it counted (bench/hotpath.py). Here a key's window is a deque of hit times, oldest
first: a hit trims the expired ones from the left and appends, in amortised constant time
and without leaving the event loop. Windows that have run empty are dropped by a sweep at
most once a `SWEEP_SECONDS`.
"""

from __future__ import annotations

import time
from collections import deque

from limits import RateLimitItem
from limits.util import WindowStats

SWEEP_SECONDS = 60.0


class _Window:
    """The hit times of one key still inside its window, oldest first."""

    __slots__ = ("expiry", "hits")

    def __init__(self, expiry: int) -> None:
        self.expiry = expiry
        self.hits: deque[float] = deque()

    def trim(self, now: float) -> None:
        start = now - self.expiry
        hits = self.hits
        while hits and hits[0] < start:
            hits.popleft()


class MemoryWindows:
    """Moving windows per key, as `limits.aio.strategies.MovingWindowRateLimiter` counts them:
    a hit is allowed while fewer than the limit's amount of hits fall within its expiry;
    a refused hit is not recorded; the window resets when its oldest hit leaves it."""

    def __init__(self) -> None:
        # By the limit's amount and expiry and the identifiers, as `limits` keys them.
        self._windows: dict[tuple[int | str, ...], _Window] = {}
        self._next_sweep = time.time() + SWEEP_SECONDS

    async def hit(self, item: RateLimitItem, *identifiers: str) -> bool:
        now = time.time()
        if now >= self._next_sweep:
            self._sweep(now)
        key: tuple[int | str, ...] = (item.amount, item.get_expiry(), *identifiers)
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window(item.get_expiry())
        window.trim(now)
        if len(window.hits) >= item.amount:
            return False
        window.hits.append(now)
        return True

    async def get_window_stats(self, item: RateLimitItem, *identifiers: str) -> WindowStats:
        now = time.time()
        window = self._windows.get((item.amount, item.get_expiry(), *identifiers))
        if window is None:
            return WindowStats(now + item.get_expiry(), item.amount)
        window.trim(now)
        start = window.hits[0] if window.hits else now
        return WindowStats(start + item.get_expiry(), item.amount - len(window.hits))

    def _sweep(self, now: float) -> None:
        """Forget the keys whose windows hold no hit any more."""
        self._next_sweep = now + SWEEP_SECONDS
        for key, window in list(self._windows.items()):
            window.trim(now)
            if not window.hits:
                del self._windows[key]
