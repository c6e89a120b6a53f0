"""Cached expensive reads (the stats routes), made stale by the writes that change them.

Entries live in a *scope*: a user's id for that user's own aggregates, `ALL_USERS` for an
administrator's view over everyone. Each scope has a version. A reader notes the version
before it queries and stores its value under that version; the value is a hit only while the
scope still has it. Writes move versions on, after their commit:

- `Database.transaction` learns which users a unit of work wrote for. An `after_flush` hook sees
  every ORM row added, changed or deleted and records its `user_id`; the few bulk `UPDATE` /
  `DELETE` statements on owned rows (the job queue's guarded transitions, job cancel, delete
  and purge, session purge) record their owners with `invalidate_cache_of` (or
  `invalidate_every_cache`), as `core.events.emit` records events.
- Once the commit succeeded, and before the unit's domain events go out (a client refetching on
  an event reads fresh numbers), `Cache.invalidate(users)` moves on the versions of those
  users and of `ALL_USERS`.

A reader that saw the old version stores under the old version, so the next reader misses; a
reader that saw the new version queried after the commit. The same hook serves API requests
and job workers, which write through `Database` too. Domain events were the other candidate:
job and message events name a job or a session, not its owner, while the ORM row carries it.
Writes to credentials and the audit log (`IGNORED_TABLES`) move no version: sign-ins write them
and no cached read counts them. The TTL is only a backstop.

Backends: `MemoryCache` (one process, LRU-bounded) and `RedisCache` (shared by every node and
worker, keys under `{redis_prefix}:cache:`). A failing Redis never fails a request nor holds
it longer than its short socket timeouts: a read is a miss computed from the database, a
store is skipped, and Redis is left alone for `RETRY_SECONDS`. An invalidation that may have
been lost makes every entry suspect: no hits until the node has replaced the Redis *epoch*
(part of every version), which it retries in the background. Without Redis each process
caches for itself, so other server processes or a separate `agenthub worker` go stale for up
to `AGENTHUB_CACHE_TTL_SECONDS`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated, Any, cast

import structlog
from fastapi import Depends, Request, Response
from pydantic import BaseModel
from sqlalchemy import event, inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from agenthub.config import Settings
from agenthub.core.events import Recorder

log = structlog.get_logger("agenthub.cache")

ALL_USERS = "*"
"""The scope of reads over every user's data; any user's write makes it stale."""
EVERYONE = "**"
"""Recorded by `invalidate_every_cache`: a write whose owners are unknown makes every scope
stale."""
IGNORED_TABLES = frozenset({"api_keys", "logins", "refresh_tokens", "audit_events"})
"""Credentials and the audit log: sign-ins write them, no cached read counts them."""
RETRY_SECONDS = 1.0
GENERATION_TTL_SECONDS = 86_400  # a scope's version outlives every value stored under it
CACHE_HEADER = "X-Cache"
_STALE_OWNERS = "agenthub.cache.stale_owners"


# -- which users a unit of work wrote for --------------------------------------------------


def invalidate_cache_of(db: Recorder, *user_ids: str | None) -> None:
    """Have these users' cached reads invalidated once this unit of work commits: it changed
    their data (bulk statements call it; ORM rows are recorded by themselves)."""
    db.info.setdefault(_STALE_OWNERS, set()).update(u for u in user_ids if u)


def invalidate_every_cache(db: AsyncSession) -> None:
    """Record a write whose owners are unknown (a purge across users): every entry is stale."""
    invalidate_cache_of(db, EVERYONE)


def take_stale_owners(db: Recorder) -> set[str]:
    owners: set[str] = db.info.pop(_STALE_OWNERS, set())
    return owners


@event.listens_for(Session, "after_flush")
def _record_owners(session: Session, _: Any) -> None:
    """The owners of the rows this flush inserted, updated or deleted (loaded state only: an
    expired `user_id` is never loaded here)."""
    owners = {
        state.dict.get("user_id")
        for state in map(inspect, (*session.new, *session.dirty, *session.deleted))
        if state.mapper.local_table.name not in IGNORED_TABLES
    }
    owners.discard(None)
    if owners:
        session.info.setdefault(_STALE_OWNERS, set()).update(owners)


# -- the cache ----------------------------------------------------------------------------


class CacheUnavailable(Exception):
    """The cache's backing service (Redis) cannot be used right now."""


@dataclass(frozen=True)
class Lookup:
    """A read's outcome: the value on a hit, and the scope's version to `set` a miss under
    (None while the backend is unusable: compute, but do not store)."""

    value: bytes | None
    version: bytes | None


_UNUSABLE = Lookup(None, None)


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


class RedisCache(Cache):
    """Shared by every node: `{prefix}:cache:epoch`, `...:gen:{scope}` and
    `...:val:{scope}:{key}` (the version, a newline, the value). A version is
    `{epoch}.{generation}`, each part a random token that a change replaces; one `MGET` reads
    the epoch, the generation and the value."""

    name = "redis"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings.cache_ttl_seconds)
        if not settings.redis_url:
            raise ValueError("RedisCache needs AGENTHUB_REDIS_URL")
        # Imported only with Redis configured: the client takes long to import.
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import RedisError

        self._errors = (RedisError, OSError)
        timeout = settings.cache_timeout_seconds
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=64,
            timeout=timeout,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # Every command here may run twice: a connection that broke is replaced once.
            # A timeout is not retried, so a hung Redis holds a request for one timeout only.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._client = aioredis.Redis.from_pool(pool)
        self._prefix = f"{settings.redis_prefix}:cache:"
        self._epoch = f"{self._prefix}epoch"
        self._retry_at = 0.0  # Redis is left alone until then after a failure
        self._down_since: float | None = None
        self._stale = False  # an invalidation may be lost: no hits until the epoch changed
        self._recovery: asyncio.Task[None] | None = None

    def _generation(self, scope: str) -> str:
        return f"{self._prefix}gen:{scope}"

    def _value(self, scope: str, key: str) -> str:
        return f"{self._prefix}val:{scope}:{key}"

    def _usable(self) -> bool:
        return not self._stale and time.monotonic() >= self._retry_at

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + RETRY_SECONDS
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("cache_unavailable", backend=self.name, error=type(exc).__name__)

    def _succeeded(self) -> None:
        self._retry_at = 0.0
        if self._down_since is not None:
            outage = round(time.monotonic() - self._down_since, 3)
            self._down_since = None
            log.info("cache_available", backend=self.name, outage_s=outage)

    async def _new_epoch(self) -> None:
        await self._client.set(self._epoch, _token())

    async def get(self, scope: str, key: str) -> Lookup:
        if not self._usable():
            return _UNUSABLE
        keys = (self._epoch, self._generation(scope), self._value(scope, key))
        try:
            found = cast("list[bytes | None]", await self._client.mget(keys))
        except self._errors as exc:
            self._failed(exc)
            return _UNUSABLE
        self._succeeded()
        epoch, generation, stored = found
        version = (epoch or b"") + b"." + (generation or b"")
        if stored is not None:
            tag, _, value = stored.partition(b"\n")
            if tag == version:
                return Lookup(value, version)
        return Lookup(None, version)

    async def set(self, scope: str, key: str, value: bytes, version: bytes, ttl: float) -> None:
        if not self._usable():
            return
        try:
            await self._client.set(
                self._value(scope, key), version + b"\n" + value, px=int(ttl * 1000)
            )
        except self._errors as exc:
            self._failed(exc)
            return
        self._succeeded()

    async def invalidate(self, users: Collection[str]) -> None:
        if not self._usable():
            self._lost()
            return
        try:
            if EVERYONE in users:
                await self._new_epoch()
            else:
                pipe = self._client.pipeline(transaction=False)
                token = _token()
                for scope in {*users, ALL_USERS}:
                    pipe.set(self._generation(scope), token, ex=GENERATION_TTL_SECONDS)
                await pipe.execute()
        except self._errors as exc:
            self._failed(exc)
            self._lost()
            return
        self._succeeded()

    def _lost(self) -> None:
        """Distrust every entry until a new epoch is in place (retried in the background)."""
        self._stale = True
        if self._recovery is None or self._recovery.done():
            self._recovery = asyncio.create_task(self._recover(), name="cache-recovery")

    async def _recover(self) -> None:
        while self._stale:
            await asyncio.sleep(max(0.0, self._retry_at - time.monotonic()))
            try:
                await self._new_epoch()
            except self._errors as exc:
                self._failed(exc)
                continue
            self._stale = False
            self._succeeded()

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except self._errors as exc:
            self._failed(exc)
            raise CacheUnavailable(f"unreachable ({type(exc).__name__})") from exc
        self._succeeded()
        if self._stale:
            raise CacheUnavailable("recovering: entries are distrusted until a new epoch")

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with suppress(asyncio.CancelledError):
                await self._recovery
        await self._client.aclose()


def _token() -> str:
    """A new version part: random, so no version ever comes back (after a restart, an
    eviction or an expiry alike)."""
    return secrets.token_hex(8)


def create_cache(settings: Settings) -> Cache:
    """Redis when `AGENTHUB_REDIS_URL` is set, the process's memory otherwise."""
    if settings.redis_url:
        return RedisCache(settings)
    return MemoryCache(settings.cache_ttl_seconds, settings.cache_max_entries)


async def get_cache(request: Request) -> Cache:
    cache: Cache = request.app.state.cache
    return cache


AppCache = Annotated[Cache, Depends(get_cache)]
