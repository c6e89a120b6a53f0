"""Helpers of the realtime tests (import as `from realtime_support import ...`)."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from asyncio import timeout as asyncio_timeout
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from agenthub.realtime.broker import Event
from processes import run
from support import PASSWORD, Account, register

T = TypeVar("T")


def redis_url() -> str:
    return os.environ.get("AGENTHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_redis() -> None:
    """Skip unless Redis answers (fail when `CI` is set)."""
    try:
        redis.Redis.from_url(redis_url(), socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is required in CI but unreachable: {exc}")
        pytest.skip(f"Redis unreachable: {exc}")


def drop_prefix(prefix: str) -> None:
    """Delete every Redis key a test deployment created under `prefix`."""
    client = redis.Redis.from_url(redis_url())
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


async def sign_up(base: str) -> Account:
    """Register and log in a new user on a running server."""
    email = f"rt-{secrets.token_hex(5)}@example.com"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        return await register(client, email)


async def receive(ws: ClientConnection, wait: float = 5) -> dict[str, Any]:
    """The next frame, decoded; skips the server's `heartbeat` frames."""
    while True:
        async with asyncio_timeout(wait):
            frame: dict[str, Any] = json.loads(await ws.recv())
        if frame["type"] != "heartbeat":
            return frame


# -- SSE, WebSocket peers, administrators and polling (test_sse, test_router, test_cluster,
# test_faults) --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SseMessage:
    """One SSE message (its `event`, `data` and `id` fields), or one comment line (`comment`)."""

    event: str | None = None
    data: str = ""
    id: str | None = None
    comment: str | None = None

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


class SseReader:
    """Reads a `text/event-stream` response message by message; a comment is a message."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = cast("AsyncGenerator[str]", response.aiter_lines())

    async def aclose(self) -> None:
        await self._lines.aclose()

    async def next(self, wait: float = 5) -> SseMessage:
        """The next message or comment (raises `TimeoutError` after `wait` seconds)."""
        fields: dict[str, str] = {}
        async with asyncio_timeout(wait):
            while True:
                line = await anext(self._lines)
                if line.startswith(":"):
                    return SseMessage(comment=line[1:].strip())
                if not line:
                    if fields:
                        return SseMessage(
                            fields.get("event"), fields.get("data", ""), fields.get("id")
                        )
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                fields[name] = (
                    f"{fields[name]}\n{value}" if name == "data" and name in fields else value
                )

    async def message(self, wait: float = 5) -> SseMessage:
        """The next message, skipping comments (keep-alives)."""
        while True:
            item = await self.next(wait)
            if item.comment is None:
                return item


@asynccontextmanager
async def sse_stream(
    base: str,
    channel: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> AsyncIterator[SseReader]:
    """`GET /v1/events?channel=...` as a stream that must have started (200, event stream);
    leaving the block disconnects."""
    query = {"channel": channel, **(params or {})}
    async with (
        httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", "/v1/events", params=query, headers=headers) as response,
    ):
        if response.status_code != 200:
            raise AssertionError(f"{response.status_code}: {(await response.aread())!r}")
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = SseReader(response)
        try:
            yield reader
        finally:
            await reader.aclose()


Frame = dict[str, Any]


class WsPeer:
    """A test's `/v1/ws` connection. Frames read while looking for another one wait in a
    backlog, so nothing is skipped by accident; `heartbeat` frames are dropped."""

    def __init__(self, ws: ClientConnection, hello: Frame) -> None:
        self.ws = ws
        self.connection_id: str = hello["connection_id"]
        self.user_id: str = hello["user_id"]
        self.backlog: list[Frame] = []
        self._ids = 0

    async def next(self, match: Callable[[Frame], bool] = lambda _: True, wait: float = 5) -> Frame:
        """The first frame (backlog first) that `match`es; the others stay in the backlog."""
        for index, frame in enumerate(self.backlog):
            if match(frame):
                return self.backlog.pop(index)
        async with asyncio_timeout(wait):
            while True:
                frame = await receive(self.ws, wait)
                if match(frame):
                    return frame
                self.backlog.append(frame)

    async def event(self, channel: str, event: str | None = None, wait: float = 5) -> Frame:
        """The next event frame of `channel` (of that `event` name, if given)."""
        return await self.next(
            lambda f: (
                f["type"] == "event"
                and f["channel"] == channel
                and (event is None or f["event"] == event)
            ),
            wait,
        )

    async def request(self, frame: Frame, wait: float = 5) -> Frame:
        """Send `frame` with a fresh `id`; its reply (whatever its type)."""
        self._ids += 1
        frame_id = f"t{self._ids}"
        await self.ws.send(json.dumps({**frame, "id": frame_id}))
        return await self.next(lambda f: f.get("id") == frame_id and f["type"] != "event", wait)

    async def subscribe(self, channel: str, since: Frame | None = None) -> Frame:
        """`subscribed` (asserted), after which this connection is live on `channel`."""
        frame: Frame = {"type": "subscribe", "channel": channel}
        if since is not None:
            frame["since"] = since
        reply = await self.request(frame)
        assert reply["type"] == "subscribed", reply
        return reply

    async def publish(self, channel: str, data: Frame) -> Frame:
        reply = await self.request({"type": "publish", "channel": channel, "data": data})
        assert reply["type"] == "published", reply
        return reply

    async def barrier(self) -> None:
        """`ping` → `pong`: every frame sent before it has been fully handled by the server
        (a subscribe's registration and presence included)."""
        assert (await self.request({"type": "ping"}))["type"] == "pong"


@asynccontextmanager
async def ws_peer(url: str, token: str) -> AsyncIterator[WsPeer]:
    """A connected `WsPeer` (its `connected` frame checked); closed when the block ends."""
    async with connect(f"{url}?token={token}", open_timeout=10) as ws:
        hello = await receive(ws)
        assert hello["type"] == "connected", hello
        yield WsPeer(ws, hello)


def make_admin(base: str, workdir: Path, env: dict[str, str]) -> Account:
    """An administrator made with `agenthub user create --admin`, logged in on `base`."""
    email = f"rt-admin-{secrets.token_hex(5)}@example.com"
    done = run(
        ["user", "create", "--email", email, "--password", PASSWORD, "--admin"], workdir, env
    )
    assert done.returncode == 0, done.stderr
    login = httpx.post(
        f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD}, timeout=10
    )
    assert login.status_code == 200, login.text
    tokens = login.json()
    user_id = done.stdout.strip().splitlines()[-1]
    return Account(user_id, email, PASSWORD, tokens["access_token"], tokens["refresh_token"])


async def create_admin(base: str, workdir: Path, env: dict[str, str]) -> Account:
    """`make_admin` from async code (the CLI runs in a thread)."""
    return await asyncio.to_thread(make_admin, base, workdir, env)


async def eventually(check: Callable[[], Awaitable[T | None]], wait: float = 5) -> T:
    """The first truthy result of `check()`, polled every 50 ms for up to `wait` seconds."""
    async with asyncio_timeout(wait):
        while True:
            result = await check()
            if result:
                return result
            await asyncio.sleep(0.05)


@dataclass
class Recorder:
    """A node's listener: what the broker delivered, in order."""

    events: list[Event] = field(default_factory=list)
    resyncs: int = 0
    # (channel, epoch, how many of the channel's events had arrived before)
    restarts: list[tuple[str, str, int]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()

    def on_resync(self) -> None:
        self.resyncs += 1
        self.changed.set()

    def on_restart(self, channel: str, epoch: str) -> None:
        self.restarts.append((channel, epoch, len(self.on(channel))))
        self.changed.set()

    def on(self, channel: str) -> list[Event]:
        return [e for e in self.events if e.channel == channel]

    async def until(self, predicate: Callable[[], bool], wait: float = 5) -> None:
        """Wait (up to `wait` seconds) until what was delivered satisfies `predicate`."""
        async with asyncio_timeout(wait):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()
