"""Moving-window rate limits (the `limits` library) raising 429 problems with Retry-After."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from agenthub.core.errors import RateLimited


class RateLimiter:
    """Counts hits per key under named limits such as `"10/minute"`."""

    def __init__(self, storage: Storage | None = None) -> None:
        self.storage = storage or MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self.storage)
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, limit: str) -> RateLimitItem:
        if limit not in self._items:
            self._items[limit] = parse(limit)
        return self._items[limit]

    async def _raise(self, item: RateLimitItem, keys: tuple[str, ...]) -> None:
        stats = await self._limiter.get_window_stats(item, *keys)
        raise RateLimited(
            math.ceil(stats.reset_time - time.time()), "Too many attempts; retry later."
        )

    async def check(self, limit: str, *keys: str) -> None:
        """429 if the window for `keys` is already full; records nothing."""
        item = self._item(limit)
        if not await self._limiter.test(item, *keys):
            await self._raise(item, keys)

    async def hit(self, limit: str, *keys: str) -> bool:
        """Record one hit; False when the window was already full."""
        return await self._limiter.hit(self._item(limit), *keys)

    async def consume(self, limit: str, *keys: str) -> None:
        """Record one hit; 429 when the window was already full."""
        item = self._item(limit)
        if not await self._limiter.hit(item, *keys):
            await self._raise(item, keys)
