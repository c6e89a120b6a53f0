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
    """Moving windows per key, as `limits.aio.strategies.MovingWindowRateLimiter` counts them
    (`web.ratelimit.Windows`): a hit is allowed while fewer than the limit's amount of hits
    fall within its expiry; a refused hit is not recorded; the window resets when its oldest
    hit leaves it."""

    def __init__(self) -> None:
        # By the limit's amount and expiry and the identifiers, as `limits` keys them.
        self._windows: dict[tuple[int | str, ...], _Window] = {}
        self._next_sweep = time.time() + SWEEP_SECONDS

    async def count(
        self, item: RateLimitItem, identifiers: tuple[str, ...], *, record: bool
    ) -> tuple[bool, WindowStats]:
        """Record a hit (`record`) unless the window is full, and the window after it; without
        `record`, whether one more hit would be allowed."""
        now = time.time()
        if now >= self._next_sweep:
            self._sweep(now)
        key: tuple[int | str, ...] = (item.amount, item.get_expiry(), *identifiers)
        window = self._windows.get(key)
        if window is None:
            if not record:
                return True, WindowStats(now + item.get_expiry(), item.amount)
            window = self._windows[key] = _Window(item.get_expiry())
        window.trim(now)
        allowed = len(window.hits) < item.amount
        if allowed and record:
            window.hits.append(now)
        start = window.hits[0] if window.hits else now
        return allowed, WindowStats(start + item.get_expiry(), item.amount - len(window.hits))

    async def hit(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> bool:
        allowed, _ = await self.count(item, identifiers, record=True)
        return allowed

    def _sweep(self, now: float) -> None:
        """Forget the keys whose windows hold no hit any more."""
        self._next_sweep = now + SWEEP_SECONDS
        for key, window in list(self._windows.items()):
            window.trim(now)
            if not window.hits:
                del self._windows[key]
