"""Moving-window rate limits in memory (`web.window`) or Redis (the `limits` library), with
429 problems.

With Redis the counters are shared by every node (keys under `<redis_prefix>:ratelimit:`). A
Redis that fails (refused, timed out) never fails nor holds up a request: the limiter counts in
process at once, says so in the log and in `state()`, and goes back to Redis by itself once a
ping answers again.

Every `/v1` route group (the first path segment after `/v1`) is limited per client IP by
`RateLimitMiddleware`, before routing, and per user once the auth dependency knows the caller
(`consume_user_limit`). Responses carry the `RateLimit-*` headers of the tighter of the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import structlog
from fastapi import APIRouter
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.util import WindowStats
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agenthub.core.errors import RateLimited, problem_response
from agenthub.core.metrics import RATE_LIMITED
from agenthub.web.window import MemoryWindows

if TYPE_CHECKING:
    from redis.asyncio import BlockingConnectionPool

log = structlog.get_logger("agenthub.ratelimit")

REDIS_TIMEOUT = 0.5  # seconds to connect, to answer, or to wait for a pooled connection
REDIS_CONNECTIONS = 64
RETRY_SECONDS = 5.0  # while counting in process, how often Redis is tried again
API_PREFIX = "/v1/"
EXEMPT_GROUPS = frozenset({"health"})
OTHER_GROUP = "other"  # paths under /v1 that no route group owns
STATE_KEY = "rate_limits"  # the request's `RequestLimits` in `scope["state"]`
RATE_LIMIT_HEADERS = (
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "RateLimit-Policy",
)

Backend = Literal["memory", "redis"]
T = TypeVar("T")


class Windows(Protocol):
    """Moving windows of hits per key: in memory (`web.window`), or in Redis."""

    async def count(
        self, item: RateLimitItem, identifiers: tuple[str, ...], *, record: bool
    ) -> tuple[bool, WindowStats]:
        """Record a hit (`record`) unless the window is full, and the window after it; without
        `record`, whether one more hit would be allowed."""
        ...

    async def hit(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> bool:
        """Record a hit unless the window is full (False then)."""
        ...


class RedisWindows:
    """`Windows` of `limits`' moving-window strategy over its Redis storage."""

    def __init__(self, storage: RedisStorage) -> None:
        self.strategy = MovingWindowRateLimiter(storage)

    async def count(
        self, item: RateLimitItem, identifiers: tuple[str, ...], *, record: bool
    ) -> tuple[bool, WindowStats]:
        counted = await self.strategy.hit(item, *identifiers) if record else True
        stats = await self.strategy.get_window_stats(item, *identifiers)
        return (counted if record else stats.remaining > 0), stats

    async def hit(self, item: RateLimitItem, identifiers: tuple[str, ...]) -> bool:
        return await self.strategy.hit(item, *identifiers)


@dataclass(frozen=True)
class StorageState:
    """Where the counters are: `active` is memory while a configured Redis is unavailable."""

    backend: Backend
    active: Backend
    error: str | None = None

    @property
    def degraded(self) -> bool:
        return self.active != self.backend


@dataclass(frozen=True)
class Quota:
    """One limit just after a hit, as the `RateLimit-*` headers report it."""

    amount: int
    window: int  # seconds
    remaining: int
    reset: int  # seconds until the oldest hit leaves the window
    allowed: bool

    def tighter(self, other: Quota | None) -> Quota:
        """The more restrictive of the two: a refusal first, then the fewer hits left."""
        if other is None:
            return self
        return min(self, other, key=lambda q: (q.allowed, q.remaining, -q.reset))

    def headers(self) -> dict[str, str]:
        values = (self.amount, self.remaining, self.reset, f"{self.amount};w={self.window}")
        return dict(zip(RATE_LIMIT_HEADERS, map(str, values), strict=True))


class RateLimiter:
    """Counts hits per key under limits such as `"10/minute"`, in memory or in Redis."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        prefix: str = "agenthub",
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        self.retry_seconds = retry_seconds
        self._memory = MemoryWindows()
        self._pool: BlockingConnectionPool | None = None
        self._redis_storage: RedisStorage | None = None
        self._redis: RedisWindows | None = None
        self._redis_errors: tuple[type[Exception], ...] = ()
        if redis_url:
            # Imported only with Redis configured: the client takes long to import.
            from redis.asyncio import BlockingConnectionPool
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError

            self._redis_errors = (RedisError, OSError)
            self._pool = BlockingConnectionPool.from_url(
                redis_url,
                max_connections=REDIS_CONNECTIONS,
                timeout=REDIS_TIMEOUT,
                socket_connect_timeout=REDIS_TIMEOUT,
                socket_timeout=REDIS_TIMEOUT,
                retry=Retry(NoBackoff(), 0),
            )
            options: dict[str, Any] = {"connection_pool": self._pool}
            self._redis_storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=f"{prefix}:ratelimit",
                **options,
            )
            self._redis = RedisWindows(self._redis_storage)
        self._error: str | None = None  # why Redis was left; None while on the configured storage
        self._down_since = 0.0
        self._recovery: asyncio.Task[None] | None = None
        self._items: dict[str, RateLimitItem] = {}

    def state(self) -> StorageState:
        backend: Backend = "memory" if self._redis is None else "redis"
        active: Backend = "memory" if self._error is not None else backend
        return StorageState(backend, active, self._error)

    async def status(self) -> StorageState:
        """`state()`; on Redis after a ping, so an outage shows even without traffic."""
        if self._redis_storage is not None and self._error is None:
            if not await self._redis_storage.check():
                self._fall_back("ping failed")
        return self.state()

    async def aclose(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovery
        if self._pool is not None:
            await self._pool.aclose()

    async def _run(self, operation: Callable[[Windows], Awaitable[T]]) -> T:
        if self._redis is not None and self._error is None:
            try:
                return await operation(self._redis)
            except self._redis_errors as exc:  # refused, reset, timed out
                self._fall_back(type(exc).__name__)
        return await operation(self._memory)

    def _fall_back(self, error: str) -> None:
        if self._error is not None or self._redis_storage is None:
            return
        self._error = error
        self._down_since = time.monotonic()
        log.warning("rate_limit_storage_fallback", error=error, retry_seconds=self.retry_seconds)
        self._recovery = asyncio.get_running_loop().create_task(self._recover(self._redis_storage))

    async def _recover(self, storage: RedisStorage) -> None:
        while True:
            await asyncio.sleep(self.retry_seconds)
            if await storage.check():
                break
        log.warning(
            "rate_limit_storage_restored",
            outage_seconds=round(time.monotonic() - self._down_since, 1),
        )
        self._error = None
        self._recovery = None

    def _item(self, limit: str) -> RateLimitItem:
        if limit not in self._items:
            self._items[limit] = parse(limit)
        return self._items[limit]

    async def acquire(self, limit: str, *keys: str) -> Quota:
        """Record one hit unless the window is full (then `allowed` is False)."""
        return await self._quota(limit, keys, record=True)

    async def peek(self, limit: str, *keys: str) -> Quota:
        """The window as it stands, recording nothing (`allowed`: one more hit would be)."""
        return await self._quota(limit, keys, record=False)

    async def _quota(self, limit: str, keys: tuple[str, ...], *, record: bool) -> Quota:
        item = self._item(limit)

        allowed, stats = await self._run(lambda windows: windows.count(item, keys, record=record))
        return Quota(
            amount=item.amount,
            window=item.get_expiry(),
            remaining=max(0, stats.remaining),
            reset=max(0, math.ceil(stats.reset_time - time.time())),
            allowed=allowed,
        )

    async def hit(self, limit: str, *keys: str) -> bool:
        """Record one hit; False when the window was already full."""
        item = self._item(limit)
        return await self._run(lambda windows: windows.hit(item, keys))


def _refusal(group: str, quota: Quota) -> RateLimited:
    RATE_LIMITED.labels(group).inc()
    return RateLimited(quota.reset, f"Too many requests to {group}; retry later.")


class RequestLimits:
    """The limits of one request: per IP (counted before routing) and per user (counted once
    the caller is known); `quota` is the tighter, for the response headers."""

    def __init__(self, limiter: RateLimiter, group: str, user_limit: str) -> None:
        self.limiter = limiter
        self.group = group
        self.user_limit = user_limit
        self.quota: Quota | None = None
        self._user_counted = False

    async def consume(self, limit: str, *keys: str) -> None:
        """Count one hit under `limit`; 429 when it is spent. Its quota joins the headers."""
        self._apply(await self.limiter.acquire(limit, *keys, self.group))

    async def check(self, limit: str, *keys: str) -> None:
        """429 when `limit` is already spent, counting nothing (hits are counted with
        `limiter.hit` when they happen, e.g. a failed login)."""
        self._apply(await self.limiter.peek(limit, *keys, self.group))

    async def hit(self, limit: str, *keys: str) -> None:
        """Count one hit under `limit` without refusing this request (see `check`)."""
        await self.limiter.hit(limit, *keys, self.group)

    def _apply(self, quota: Quota) -> None:
        self.quota = quota.tighter(self.quota)
        if not quota.allowed:
            raise _refusal(self.group, quota)

    async def consume_user(self, user_id: str) -> None:
        if not self._user_counted:
            self._user_counted = True
            await self.consume(self.user_limit, "user", user_id)


def request_limits(scope: Scope, limiter: RateLimiter) -> RequestLimits:
    """The request's limits: the ones the middleware started, or (limits disabled) a set of
    its own for a route's fixed limits such as the login limits."""
    limits: RequestLimits | None = scope.get("state", {}).get(STATE_KEY)
    if limits is None:
        limits = RequestLimits(limiter, _segment(scope["path"]), user_limit="")
    return limits


async def consume_user_limit(scope: Scope, user_id: str) -> None:
    """Count a request of an authenticated caller against their limit for its route group
    (once per request; nothing for routes outside the limits). 429 when it is spent."""
    limits: RequestLimits | None = scope.get("state", {}).get(STATE_KEY)
    if limits is not None:
        await limits.consume_user(user_id)


def route_groups(routers: Iterable[APIRouter]) -> frozenset[str]:
    """The route groups of these routers: the first path segments after /v1 (health aside)."""
    paths = (getattr(route, "path", "") for router in routers for route in router.routes)
    groups = {_segment(path) for path in paths if path.startswith(API_PREFIX)}
    return frozenset(groups - EXEMPT_GROUPS)


def _segment(path: str) -> str:
    return path[len(API_PREFIX) :].split("/", 1)[0]


class RateLimitMiddleware:
    """Per client IP and route group, before routing; `RateLimit-*` headers on every limited
    response (the tighter of the IP and the user limit), 429 problem+json when one is spent.

    Paths under /v1 outside the known `groups` share one, so made-up paths cannot multiply
    counters.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        ip_limit: str,
        user_limit: str,
        group_limits: Mapping[str, str],
        groups: Iterable[str],
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.ip_limit = ip_limit
        self.user_limit = user_limit
        self.group_limits = dict(group_limits)
        self.groups = frozenset(groups)

    def group(self, path: str) -> str | None:
        """The route group of `path`; None for what is not limited (outside /v1, health)."""
        if not path.startswith(API_PREFIX):
            return None
        segment = _segment(path)
        if segment in EXEMPT_GROUPS:
            return None
        return segment if segment in self.groups else OTHER_GROUP

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        group = self.group(scope["path"]) if scope["type"] == "http" else None
        if group is None:
            await self.app(scope, receive, send)
            return
        limits = RequestLimits(self.limiter, group, self.group_limits.get(group, self.user_limit))
        scope.setdefault("state", {})[STATE_KEY] = limits

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and limits.quota is not None:
                headers = MutableHeaders(scope=message)
                for name, value in limits.quota.headers().items():
                    headers[name] = value
            await send(message)

        client = scope.get("client")
        try:
            await limits.consume(self.ip_limit, "ip", client[0] if client else "unknown")
        except RateLimited as exc:
            response = problem_response(
                exc.status,
                code=exc.code,
                title=exc.title,
                detail=exc.detail,
                headers=exc.headers,
                instance=scope["path"],
            )
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)
