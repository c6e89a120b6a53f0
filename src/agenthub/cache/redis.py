"""The cache every node and worker shares, in Redis; a failing Redis is a miss, never an
error."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Collection
from contextlib import suppress
from typing import cast

import structlog

from agenthub.cache.base import UNUSABLE, Cache, CacheUnavailable, Lookup
from agenthub.cache.stale import ALL_USERS, EVERYONE
from agenthub.config import Settings

log = structlog.get_logger("agenthub.cache")

RETRY_SECONDS = 1.0
GENERATION_TTL_SECONDS = 86_400  # a scope's version outlives every value stored under it


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
            return UNUSABLE
        keys = (self._epoch, self._generation(scope), self._value(scope, key))
        try:
            found = cast("list[bytes | None]", await self._client.mget(keys))
        except self._errors as exc:
            self._failed(exc)
            return UNUSABLE
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
