"""`RealtimeClient`: the `/v1/ws` protocol with resumable subscriptions that survive
reconnects (exponential backoff with full jitter)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

from websockets.exceptions import WebSocketException

from agenthub.client.connection import (
    AUTH_CLOSE_CODE,
    Connection,
    TokenProvider,
    resolve_token,
    ws_url,
)
from agenthub.client.errors import AuthenticationFailed, ConnectionLost, RealtimeError
from agenthub.client.subscription import (
    DEFAULT_QUEUE_SIZE,
    Event,
    HistoryPage,
    JsonDict,
    Position,
    Subscription,
)

log = logging.getLogger("agenthub.client")

RESUBSCRIBE_BATCH = 20  # subscribe frames per second after a reconnect (server flood limit)
RENEW_MARGIN_SECONDS = 30.0  # send a fresh token this long before the connection's expires
RENEW_RETRY_SECONDS = 1.0
TRANSIENT = frozenset({"unavailable", "rate_limited", "internal"})  # retried on a new connection
_random = secrets.SystemRandom()


class RealtimeClient:
    """One WebSocket connection to `/v1/ws`, reconnected automatically until `close()`.

    After a drop (any close code but 4401, or a transport failure) it reconnects with
    exponential backoff and full jitter (`backoff_base` doubling up to `backoff_cap` seconds)
    and resubscribes every subscription from its last (epoch, offset), so nothing is missed
    or repeated. With a `token_provider` (as `AgentHubClient.realtime()` gives it) a fresh
    token is sent in an `auth` frame before the connection's token expires, so the server
    keeps it open. Close code 4401 (credentials expired or revoked) is fatal:
    `AuthenticationFailed` is raised by later calls and by every subscription's iterator.
    Requests wait up to `request_timeout` seconds (including for a reconnect), then raise
    `TimeoutError`; a request cut off by a drop raises `ConnectionLost`. `queue_size` bounds
    each subscription's queue (see `Subscription`).
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_provider: TokenProvider | None = None,
        request_timeout: float = 10.0,
        connect_timeout: float = 10.0,
        backoff_base: float = 0.1,
        backoff_cap: float = 5.0,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_message_bytes: int = 16 * 2**20,
    ) -> None:
        self.url = ws_url(url)
        self._token = token
        self._token_provider = token_provider
        self._request_timeout = request_timeout
        self._connect_timeout = connect_timeout
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._queue_size = queue_size
        self._max_message_bytes = max_message_bytes
        self.reconnects = 0
        self.last_close_code: int | None = None  # of the last connection that ended
        self._conn: Connection | None = None
        self._ready = asyncio.Event()  # connected and resubscribed (also set once stopped)
        self._closing = False
        self._failure: RealtimeError | None = None
        self._subs: dict[str, Subscription] = {}
        self._runner: asyncio.Task[None] | None = None
        self._resubscriber: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._last: Connection | None = None

    @property
    def connection_id(self) -> str | None:
        return self._last.connection_id if self._last else None

    @property
    def user_id(self) -> str | None:
        return self._last.user_id if self._last else None

    @property
    def heartbeat_interval(self) -> float | None:
        return self._last.heartbeat_interval if self._last else None

    @property
    def connected(self) -> bool:
        return self._ready.is_set() and self._conn is not None

    @property
    def failure(self) -> RealtimeError | None:
        """The fatal error that stopped the client (e.g. `AuthenticationFailed`), if any."""
        return self._failure

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self) -> RealtimeClient:
        """Open the connection (raises `AuthenticationFailed`, `OSError`, ... on failure)."""
        if self._runner is not None and not self._runner.done():
            raise RuntimeError("already connected")
        self._closing, self._failure = False, None
        self._attach(await self._open())
        self._ready.set()
        self._runner = asyncio.create_task(self._run(), name="agenthub-realtime")
        return self

    async def close(self) -> None:
        """Close deliberately: no reconnect; subscriptions end, pending calls fail."""
        self._closing = True
        conn, runner = self._conn, self._runner
        if conn is not None:
            await conn.close()
        if runner is not None:
            runner.cancel()
            await asyncio.wait([runner])
        self._detach("client closed")
        for sub in list(self._subs.values()):
            sub._finish()
        self._subs.clear()
        self._ready.set()

    async def __aenter__(self) -> RealtimeClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def drop(self) -> None:
        """Abort the transport without a close handshake (simulates a network change)."""
        if self._conn is not None:
            self._conn.abort()
            self._ready.clear()

    async def wait_connected(self) -> None:
        """Wait (up to `request_timeout`) until connected and every subscription is
        resubscribed."""
        async with asyncio.timeout(self._request_timeout):
            await self._connection()

    async def wait_closed(self) -> None:
        """Wait until the client stops; raises its fatal error, if any."""
        if self._runner is not None:
            await asyncio.wait([self._runner])
        if self._failure is not None:
            raise self._failure

    # -- requests ---------------------------------------------------------------------------

    async def subscribe(self, channel: str, since: Position | None = None) -> Subscription:
        """Subscribe; with `since`, the events after it are replayed first."""
        async with asyncio.timeout(self._request_timeout):
            conn = await self._connection()
            if channel in self._subs:
                raise ValueError(f"already subscribed to {channel!r}")
            sub = Subscription(channel, since, self._remove, self._queue_size)
            self._subs[channel] = sub  # registered as the frame leaves: see _resubscribe
            try:
                await conn.request(sub.frame())
            except ConnectionLost:
                if self._closing or self._failure is not None:
                    self._forget(sub)
                    raise
                # dropped mid-request: the reconnect resubscribes it from `since`
            except BaseException:
                self._forget(sub)
                raise
        return sub

    async def unsubscribe(self, channel: str) -> None:
        sub = self._subs.get(channel)
        if sub is not None:
            await self._remove(sub)

    async def publish(self, channel: str, data: JsonDict) -> int:
        """Publish to a `room:` channel; returns the event's offset."""
        reply = await self._request({"type": "publish", "channel": channel, "data": data})
        return int(reply["offset"])

    async def presence(self, channel: str) -> list[JsonDict]:
        """Members of a room: `connection_id`, `user_id`, `joined_at` each (none unless this
        user has a connection in the room)."""
        reply = await self._request({"type": "presence", "channel": channel})
        return list(reply.get("members", []))

    async def history(
        self, channel: str, since: Position | None = None, limit: int | None = None
    ) -> HistoryPage:
        """Retained events of a channel after `since` (all retained ones without it)."""
        frame: JsonDict = {"type": "history", "channel": channel}
        if since is not None:
            frame["since"] = since.to_json()
        if limit is not None:
            frame["limit"] = limit
        return HistoryPage.from_frame(await self._request(frame))

    async def ping(self) -> float:
        """A `ping` round trip; returns its duration in seconds."""
        started = time.perf_counter()
        await self._request({"type": "ping"})
        return time.perf_counter() - started

    async def _request(self, frame: JsonDict) -> JsonDict:
        async with asyncio.timeout(self._request_timeout):
            conn = await self._connection()
            return await conn.request(frame)

    async def _connection(self) -> Connection:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closing or self._runner is None:
                raise ConnectionLost("client is closed")
            if self._ready.is_set() and self._conn is not None:
                return self._conn
            await self._ready.wait()

    async def _remove(self, sub: Subscription) -> None:
        if not self._forget(sub) or self._closing or self._failure is not None:
            return
        try:
            await self._request({"type": "unsubscribe", "channel": sub.channel})
        except ConnectionLost:
            pass  # the server forgets subscriptions with the connection
        except RealtimeError as exc:
            if exc.code != "not_subscribed":
                raise

    def _forget(self, sub: Subscription, error: BaseException | None = None) -> bool:
        sub._finish(error)
        if self._subs.get(sub.channel) is sub:
            del self._subs[sub.channel]
            return True
        return False

    def _on_frame(self, frame: JsonDict) -> None:
        kind = frame.get("type")
        if kind not in ("event", "subscribed"):
            return
        sub = self._subs.get(str(frame.get("channel")))
        if sub is None:
            return
        if kind == "event":
            sub._on_event(Event.from_frame(frame))
        else:
            sub._on_subscribed(frame)

    # -- the connection ---------------------------------------------------------------------

    async def _open(self) -> Connection:
        return await Connection.open(
            self.url,
            await resolve_token(self._token, self._token_provider),
            open_timeout=self._connect_timeout,
            max_size=self._max_message_bytes,
        )

    def _attach(self, conn: Connection) -> None:
        self._conn = self._last = conn
        if self._token_provider is not None and conn.expires_in is not None:
            self._renewer = asyncio.create_task(self._renew(conn), name="agenthub-realtime-auth")

    async def _renew(self, conn: Connection) -> None:
        """Before the connection's token expires, send the provider's (fresh) token in an
        `auth` frame; again before that one expires, and so on."""
        expires_in = conn.expires_in
        delay = renew_delay(expires_in) if expires_in is not None else None
        while delay is not None:
            await asyncio.sleep(delay)
            try:
                token = await resolve_token(None, self._token_provider)
                async with asyncio.timeout(self._request_timeout):
                    reply = await conn.request({"type": "auth", "token": token})
            except (ConnectionLost, AuthenticationFailed):
                return  # a new connection starts over; a refused refresh ends with 4401
            except (RealtimeError, TimeoutError) as exc:
                log.warning("realtime token renewal failed (%r); retrying", exc)
                delay = RENEW_RETRY_SECONDS
                continue
            expires_in = reply.get("expires_in")
            delay = renew_delay(float(expires_in)) if expires_in is not None else None

    def _detach(self, reason: str) -> None:
        """The connection is gone: fail its pending requests, wait for the next one."""
        if self._conn is not None:
            self._conn.fail_pending(reason)
        self._conn = None
        self._ready.clear()
        for task in (self._resubscriber, self._renewer):
            if task is not None:
                task.cancel()
        self._resubscriber = self._renewer = None

    async def _run(self) -> None:
        try:
            await self._serve()
        except Exception as exc:
            log.exception("realtime client stopped")
            if self._conn is not None:
                self._conn.abort()
            self._detach("client failed")
            self._fail(RealtimeError("internal_error", repr(exc)))

    async def _serve(self) -> None:
        """Read frames; after a drop, reconnect and resubscribe, until closed or failed."""
        attempt = 0
        while self._conn is not None:
            started = time.monotonic()
            code = self.last_close_code = await self._conn.run(self._on_frame)
            self._detach(f"connection closed ({code})")
            if self._closing:
                return
            if code == AUTH_CLOSE_CODE:
                self._fail(AuthenticationFailed("closed by the server with 4401"))
                return
            if time.monotonic() - started >= self._backoff_cap:
                attempt = 0
            log.info("realtime connection lost (%s); reconnecting", code)
            try:
                conn, attempt = await self._reconnect(attempt)
            except AuthenticationFailed as exc:
                self._fail(exc)
                return
            self.reconnects += 1
            self._attach(conn)
            self._resubscriber = asyncio.create_task(self._resubscribe(conn))

    async def _reconnect(self, attempt: int) -> tuple[Connection, int]:
        while True:
            ceiling = min(self._backoff_cap, self._backoff_base * 2 ** min(attempt, 30))
            await asyncio.sleep(_random.uniform(0, ceiling))
            attempt += 1
            try:
                return await self._open(), attempt
            except AuthenticationFailed:
                raise
            except (OSError, TimeoutError, WebSocketException, RealtimeError) as exc:
                log.info("realtime reconnect attempt %d failed: %s", attempt, exc)

    async def _resubscribe(self, conn: Connection) -> None:
        """Resubscribe everything from its last position, then mark the client ready."""
        subs = list(self._subs.values())
        try:
            for start in range(0, len(subs), RESUBSCRIBE_BATCH):
                if start:
                    await asyncio.sleep(1)
                batch = [s for s in subs[start : start + RESUBSCRIBE_BATCH] if not s.closed]
                async with asyncio.timeout(self._request_timeout):
                    results = await asyncio.gather(
                        *(conn.request(s.frame()) for s in batch),
                        return_exceptions=True,
                    )
                for sub, result in zip(batch, results, strict=True):
                    if isinstance(result, ConnectionLost):
                        return  # dropped again: the next reconnect resubscribes
                    if isinstance(result, RealtimeError) and result.code not in TRANSIENT:
                        self._forget(sub, result)  # e.g. forbidden now
                    elif isinstance(result, BaseException):
                        raise result
        except Exception as exc:  # e.g. no answer in time: start over on a new connection
            log.warning("realtime resubscription failed (%r); reconnecting", exc)
            conn.abort()
            return
        if self._conn is conn:
            self._ready.set()

    def _fail(self, error: RealtimeError) -> None:
        self._failure = error
        for sub in list(self._subs.values()):
            sub._finish(error)
        self._subs.clear()
        self._ready.set()


def renew_delay(expires_in: float) -> float:
    """How long to wait before renewing a token that expires in `expires_in` seconds: until
    `RENEW_MARGIN_SECONDS` before, or half-way for short-lived tokens."""
    return max(0.0, expires_in - min(RENEW_MARGIN_SECONDS, expires_in / 2))
