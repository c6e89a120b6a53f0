"""One process's cache (`AGENTHUB_REDIS_URL` unset): other processes go stale for up to
`AGENTHUB_CACHE_TTL_SECONDS`."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Collection

from agenthub.cache.base import Cache, Lookup
from agenthub.cache.stale import ALL_USERS, EVERYONE


class MemoryCache(Cache):
    """One process's cache: at most `max_entries` values, least recently used evicted first.

    Versions come from one counter, so a version never repeats; scopes without one of their
    own share `_floor`. When too many scopes have their own, everything is dropped and the
    floor rises past every version handed out.
    """

    name = "memory"

    def __init__(self, ttl: float, max_entries: int) -> None:
        super().__init__(ttl)
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str], tuple[bytes, float, bytes]] = OrderedDict()
        self._versions: dict[str, int] = {}
        self._clock = 0
        self._floor = 0

    def _version(self, scope: str) -> bytes:
        return b"%d" % self._versions.get(scope, self._floor)

    async def get(self, scope: str, key: str) -> Lookup:
        version = self._version(scope)
        entry = self._entries.get((scope, key))
        if entry is None or entry[0] != version or entry[1] <= time.monotonic():
            return Lookup(None, version)
        self._entries.move_to_end((scope, key))
        return Lookup(entry[2], version)

    async def set(self, scope: str, key: str, value: bytes, version: bytes, ttl: float) -> None:
        self._entries[(scope, key)] = (version, time.monotonic() + ttl, value)
        self._entries.move_to_end((scope, key))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def invalidate(self, users: Collection[str]) -> None:
        if EVERYONE in users or len(self._versions) >= self._max:
            self._clock += 1
            self._floor = self._clock
            self._versions.clear()
            self._entries.clear()
            if EVERYONE in users:
                return
        for scope in {*users, ALL_USERS}:
            self._clock += 1
            self._versions[scope] = self._clock

    async def ping(self) -> None:
        """Always serving: the memory is the process's own."""

    async def close(self) -> None:
        self._entries.clear()
