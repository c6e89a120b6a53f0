"""The cache's interface: values by (scope, key), stale once their scope's version moved on."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Response
from pydantic import BaseModel

CACHE_HEADER = "X-Cache"


class CacheUnavailable(Exception):
    """The cache's backing service (Redis) cannot be used right now."""


@dataclass(frozen=True)
class Lookup:
    """A read's outcome: the value on a hit, and the scope's version to `set` a miss under
    (None while the backend is unusable: compute, but do not store)."""

    value: bytes | None
    version: bytes | None


UNUSABLE = Lookup(None, None)


class Cache(ABC):
    """Values by (scope, key), stale as soon as their scope's version moved on."""

    name: str

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl

    @abstractmethod
    async def get(self, scope: str, key: str) -> Lookup: ...

    @abstractmethod
    async def set(self, scope: str, key: str, value: bytes, version: bytes, ttl: float) -> None:
        """Store `value` as read under `version` (from `get`), for at most `ttl` seconds."""

    @abstractmethod
    async def invalidate(self, users: Collection[str]) -> None:
        """These users' data changed: their scopes and `ALL_USERS` are stale (every scope when
        `users` holds `EVERYONE`). Never raises."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise `CacheUnavailable` unless the backend serves hits now."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections and tasks."""

    async def respond(
        self, scope: str, key: str, compute: Callable[[], Awaitable[BaseModel]]
    ) -> Response:
        """The JSON of `compute()`, from the cache while `scope` is unchanged; `X-Cache` says
        which."""
        found = await self.get(scope, key)
        if found.value is not None:
            return _json(found.value, "hit")
        body = (await compute()).model_dump_json().encode()
        if found.version is not None and self.ttl > 0:
            await self.set(scope, key, body, found.version, self.ttl)
        return _json(body, "miss")


def _json(body: bytes, outcome: str) -> Response:
    return Response(body, media_type="application/json", headers={CACHE_HEADER: outcome})


async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


AppCache = Annotated[Cache, Depends(get_cache)]
