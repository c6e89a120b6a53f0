"""The Redis broker: logs, fan-out and presence shared by every node using one Redis and prefix.

Keys (all under `<prefix>:`): `meta:<channel>` (hash: `epoch`, `offset`, and `lost` once
restarted), `events:<channel>` (stream of retained events, id `<offset>-1`, field `b` = JSON
`{"event","data","ts"}`), `presence:<key>` (hash: member id -> JSON `{"expires","info"}`) and
the pub/sub channel `ev:<channel>` (message `<epoch>\\n<offset>\\n<body>`; offset 0 with no
body announces a restart). One Lua script assigns the offset, appends and publishes, so
pub/sub order is offset order on every node.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

from agenthub.realtime.broker import (
    BrokerListener,
    BrokerUnavailable,
    Event,
    History,
    JsonDict,
    dumps,
    log,
)

# KEYS: meta, stream. ARGV: new epoch, body, history size, ttl (s), pub/sub channel.
PUBLISH_LUA = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[1]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], offset .. '-1', 'b', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], epoch .. '\\n' .. offset .. '\\n' .. ARGV[2])
return {offset, epoch}
"""

# KEYS: meta, stream. ARGV: new epoch, ttl (s), pub/sub channel.
RESTART_LUA = """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', 0, 'lost', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[1] .. '\\n0\\n')
return ARGV[1]
"""

# KEYS: meta, stream. ARGV: new epoch, ttl (s), first stream id wanted ('' for none).
# Reading keeps the log alive, as in memory.
HISTORY_LUA = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'offset', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return {ARGV[1], 0, 0, {}}
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local lost = redis.call('HEXISTS', KEYS[1], 'lost')
if ARGV[3] == '' then
  return {epoch, offset, lost, {}}
end
return {epoch, offset, lost, redis.call('XRANGE', KEYS[2], ARGV[3], '+')}
"""

# KEYS: presence hash. ARGV: member id, value, ... Drops expired members unless refreshed since.
EXPIRE_MEMBERS_LUA = """
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
"""

SUBSCRIBE_TIMEOUT = 5.0
MAX_CONNECTIONS = 64  # a burst of publications waits for a connection rather than opening more
BACKOFF_MIN = 0.1
BACKOFF_MAX = 2.0
_GLOB = re.compile(r"([*?\[\]\\])")


def _new_epoch() -> str:
    return secrets.token_hex(4)


@contextmanager
def _unavailable(operation: str) -> Iterator[None]:
    """Turn a Redis connection error or timeout into `BrokerUnavailable` (never with the URL)."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise BrokerUnavailable(f"redis {operation} failed: {type(exc).__name__}") from exc


class RedisBroker:
    """Every node shares the logs and presence in Redis; each reads live events on one pub/sub
    connection, reconnecting (and asking its listener to resync) when Redis comes back."""

    name = "redis"
    ping_interval = 15.0  # an idle pub/sub connection is pinged; no answer twice -> reconnect

    def __init__(
        self, url: str, *, prefix: str, history: int, history_ttl: float, timeout: float
    ) -> None:
        """The broker on the Redis at `url`, its keys under `prefix`; each channel keeps its
        last `history` events for `history_ttl` seconds; every call waits `timeout` at most."""
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),  # a publish must never run twice
        }
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=timeout, **options
        )
        self._client = aioredis.Redis.from_pool(pool)
        # Blocking pub/sub reads ignore socket_timeout; the reader pings an idle connection.
        self._pubsub_client = aioredis.Redis.from_url(url, **options)
        self._prefix = f"{prefix}:"
        self._ev_prefix = f"{self._prefix}ev:"
        self._size = history
        self._ttl = math.ceil(history_ttl)
        self._publish = self._client.register_script(PUBLISH_LUA)
        self._restart = self._client.register_script(RESTART_LUA)
        self._history = self._client.register_script(HISTORY_LUA)
        self._expire_members = self._client.register_script(EXPIRE_MEMBERS_LUA)
        self._listener: BrokerListener | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pubsub: PubSub | None = None  # set while connected
        self._channels: set[str] = set()  # pub/sub channel names this node wants
        self._waiters: dict[str, asyncio.Future[None]] = {}
        self._first_attempt = asyncio.Event()  # set once the reader first tried to connect

    def _keys(self, channel: str) -> list[str]:
        return [f"{self._prefix}meta:{channel}", f"{self._prefix}events:{channel}"]

    async def start(self, listener: BrokerListener) -> None:
        """Start the reader; it connects (and keeps retrying) in the background."""
        self._listener = listener
        if self._reader is None:
            self._reader = asyncio.create_task(self._run(), name="redis-broker-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        self._listener = None
        await self._client.aclose()
        await self._pubsub_client.aclose()

    async def ping(self) -> None:
        with _unavailable("ping"):
            await self._client.ping()

    async def publish(self, channel: str, event: str, data: JsonDict, ts: str) -> Event:
        body = dumps({"event": event, "data": data, "ts": ts})
        ev = self._ev_prefix + channel
        args: list[EncodableT] = [_new_epoch(), body, self._size, self._ttl, ev]
        with _unavailable("publish"):
            offset, epoch = await self._publish(keys=self._keys(channel), args=args)
        return Event(channel, int(offset), str(epoch), event, data, ts)

    async def restart(self, channel: str) -> str:
        args: list[EncodableT] = [_new_epoch(), self._ttl, self._ev_prefix + channel]
        with _unavailable("restart"):
            epoch = await self._restart(keys=self._keys(channel), args=args)
        return str(epoch)

    async def history(self, channel: str, after: int | None = 0) -> History:
        start = "" if after is None else f"{after + 1}-0"  # ids are `<offset>-1`
        with _unavailable("history"):
            epoch, offset, lost, entries = await self._history(
                keys=self._keys(channel), args=[_new_epoch(), self._ttl, start]
            )
        events = [self._event(channel, epoch, int(i.split("-")[0]), f[1]) for i, f in entries]
        return History(str(epoch), int(offset), events, bool(lost))

    @staticmethod
    def _event(channel: str, epoch: str, offset: int, body: str) -> Event:
        item = json.loads(body)
        return Event(channel, offset, epoch, item["event"], item["data"], item["ts"])

    async def subscribe(self, channel: str) -> None:
        key = self._ev_prefix + channel
        if not self._first_attempt.is_set():  # just started: wait for the first connection
            with suppress(TimeoutError):
                async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                    await self._first_attempt.wait()
        pubsub = self._pubsub
        if pubsub is None:
            raise BrokerUnavailable("redis subscribe failed: not connected")
        waiter = self._waiters.get(key)
        if waiter is None:
            if key in self._channels:
                return
            waiter = self._waiters[key] = asyncio.get_running_loop().create_future()
            self._channels.add(key)
            try:
                with _unavailable("subscribe"):
                    await pubsub.subscribe(key)
            except BrokerUnavailable:
                self._forget(key)
                raise
        try:
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await asyncio.shield(waiter)
        except TimeoutError:
            self._forget(key)
            raise BrokerUnavailable("redis subscribe failed: no confirmation") from None

    def _forget(self, key: str) -> None:
        self._channels.discard(key)
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def unsubscribe(self, channel: str) -> None:
        key = self._ev_prefix + channel
        self._forget(key)
        if self._pubsub is not None:
            with suppress(RedisError, OSError):  # a lost connection has no subscriptions left
                await self._pubsub.unsubscribe(key)

    async def _run(self) -> None:
        """Read live events forever: reconnect with backoff, resubscribe, then resync."""
        backoff = BACKOFF_MIN
        interrupted = False
        while True:
            pubsub = self._pubsub_client.pubsub()
            try:
                await pubsub.connect()  # type: ignore[no-untyped-call]
                self._pubsub = pubsub
                self._first_attempt.set()
                channels = set(self._channels)
                if channels:
                    await pubsub.subscribe(*channels)
                if interrupted:
                    log.info("redis_pubsub_reconnected", channels=len(channels))
                backoff = BACKOFF_MIN
                await self._read(pubsub, channels if interrupted else None)
            except (RedisError, OSError) as exc:
                if not interrupted:
                    log.warning("redis_pubsub_disconnected", error=type(exc).__name__)
                interrupted = True
            except Exception:
                log.exception("redis_pubsub_reader_failed")
                interrupted = True
            finally:
                self._pubsub = None
                self._first_attempt.set()
                with suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _read(self, pubsub: PubSub, resync: set[str] | None) -> None:
        """Dispatch messages; after a reconnect, resync once every channel is subscribed again."""
        if resync is not None and not resync:
            self._resync()
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=self.ping_interval)
            if message is None:
                if pinged:
                    raise RedisTimeoutError("pub/sub connection stopped answering")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            kind, key = message.get("type"), message.get("channel")
            if kind == "message" and key in self._channels:
                self._deliver(key, message["data"])
            elif kind == "subscribe":
                waiter = self._waiters.pop(key, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
                if key not in self._channels:  # unsubscribed (or gave up) meanwhile
                    await pubsub.unsubscribe(key)
                if resync and key in resync:
                    resync.discard(key)
                    if not resync:
                        self._resync()

    def _deliver(self, key: str, data: str) -> None:
        try:
            epoch, offset, body = data.split("\n", 2)
            channel = key[len(self._ev_prefix) :]
            if self._listener is None:
                return
            if offset == "0":
                self._listener.on_restart(channel, epoch)
            else:
                self._listener.on_event(self._event(channel, epoch, int(offset), body))
        except Exception:
            log.exception("redis_event_dispatch_failed", channel=key)

    def _resync(self) -> None:
        if self._listener is not None:
            try:
                self._listener.on_resync()
            except Exception:
                log.exception("redis_resync_failed")

    def _presence(self, key: str) -> str:
        return f"{self._prefix}presence:{key}"

    async def set_members(self, key: str, members: Mapping[str, JsonDict], ttl: float) -> None:
        if not members:
            return
        expires = time.time() + ttl
        values: dict[EncodableT, EncodableT] = {
            m: dumps({"expires": expires, "info": info}) for m, info in members.items()
        }
        name, seconds = self._presence(key), math.ceil(ttl)
        with _unavailable("presence"):
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hset(name, mapping=values)
                pipe.expire(name, seconds, nx=True)  # a new set: expire with its members
                pipe.expire(name, seconds, gt=True)  # never cut a longer-lived member short
                await pipe.execute()

    async def remove_member(self, key: str, member_id: str) -> None:
        with _unavailable("presence"):
            await self._client.hdel(self._presence(key), member_id)

    @staticmethod
    def _live(entries: Mapping[Any, Any], now: float) -> tuple[list[JsonDict], list[str]]:
        """The unexpired members' info, and `[id, value, ...]` of the expired (or unreadable)."""
        live: list[JsonDict] = []
        expired: list[str] = []
        for member_id, raw in entries.items():
            try:
                value = json.loads(raw)
                if value["expires"] > now:
                    live.append(value["info"])
                    continue
            except (ValueError, KeyError, TypeError):
                pass
            expired += [member_id, raw]
        return live, expired

    async def members(self, key: str) -> list[JsonDict]:
        name = self._presence(key)
        with _unavailable("presence"):
            live, expired = self._live(await self._client.hgetall(name), time.time())
            if expired:  # another node may have refreshed one meanwhile: compare, then delete
                await self._expire_members(keys=[name], args=expired)
        return live

    async def member_keys(self, prefix: str) -> list[str]:
        base = self._presence("")
        pattern = _GLOB.sub(r"\\\1", base + prefix) + "*"
        with _unavailable("presence"):
            names = [n async for n in self._client.scan_iter(match=pattern, count=1000)]
            async with self._client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(name)
                found = await pipe.execute()
        now = time.time()
        return [n[len(base) :] for n, e in zip(names, found, strict=True) if self._live(e, now)[0]]
