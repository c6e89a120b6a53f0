"""One WebSocket connection to `/v1/ws`: the `connected` handshake, replies matched to requests
by `id`, answers to server heartbeats and a liveness timeout."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from agenthub.client.errors import ApiError, AuthenticationFailed, ConnectionLost, RealtimeError
from agenthub.client.subscription import JsonDict

log = logging.getLogger("agenthub.client")

TokenProvider = Callable[[], Awaitable[str | None]]

AUTH_CLOSE_CODE = 4401
ABNORMAL_CLOSE_CODE = 1006
_HEARTBEAT = json.dumps({"type": "heartbeat"})
_ids = itertools.count(1)


def ws_url(base_url: str) -> str:
    """`http(s)://host[/prefix]` -> `ws(s)://host[/prefix]/v1/ws`; ws(s) URLs are kept."""
    parts = urlsplit(base_url)
    if parts.scheme in ("ws", "wss"):
        return base_url
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not an http(s) or ws(s) URL: {base_url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/v1/ws", "", ""))


async def resolve_token(token: str | None, provider: TokenProvider | None) -> str | None:
    """The token to connect with; a provider refused with 401/403 is `AuthenticationFailed`,
    any other provider failure a (retried) `RealtimeError`."""
    if provider is None:
        return token
    try:
        return await provider()
    except ApiError as exc:
        if exc.status in (401, 403):
            raise AuthenticationFailed(f"cannot get a token: {exc}") from exc
        raise RealtimeError("token_unavailable", str(exc)) from exc
    except Exception as exc:  # e.g. the refresh request failed
        raise RealtimeError("token_unavailable", str(exc)) from exc


class Connection:
    """An open connection; `run()` reads it until it ends. Event and `subscribed` frames go to
    `on_frame` (synchronously, before the reply to the request that caused them resolves)."""

    def __init__(self, ws: ClientConnection, hello: JsonDict) -> None:
        self.ws = ws
        self.connection_id = str(hello.get("connection_id"))
        self.user_id = str(hello.get("user_id"))
        interval = hello.get("heartbeat_interval")
        self.heartbeat_interval = float(interval) if interval else None
        expires_in = hello.get("expires_in")
        # Seconds until the server closes the connection (4401) unless sent a fresh token.
        self.expires_in = float(expires_in) if expires_in is not None else None
        self._pending: dict[str, asyncio.Future[JsonDict]] = {}
        self._lost: str | None = None

    @classmethod
    async def open(
        cls, url: str, token: str | None, *, open_timeout: float, max_size: int
    ) -> Connection:
        """Connect and read the `connected` frame; 4401 or HTTP 401/403 raise
        `AuthenticationFailed`."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            ws = await connect(
                url, additional_headers=headers, open_timeout=open_timeout, max_size=max_size
            )
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise AuthenticationFailed(f"HTTP {exc.response.status_code}") from exc
            raise
        try:
            async with asyncio.timeout(open_timeout):
                hello = json.loads(await ws.recv())
        except ConnectionClosed as exc:
            if exc.rcvd is not None and exc.rcvd.code == AUTH_CLOSE_CODE:
                raise AuthenticationFailed(exc.rcvd.reason or "closed with 4401") from exc
            raise
        except (TimeoutError, ValueError):
            await ws.close()
            raise
        if not isinstance(hello, dict) or hello.get("type") != "connected":
            await ws.close()
            raise RealtimeError("protocol_error", f"expected a connected frame: {hello!r:.200}")
        return cls(ws, hello)

    async def request(self, frame: JsonDict) -> JsonDict:
        """Send `frame` with a fresh `id`; its reply, or `RealtimeError` for an error frame,
        or `ConnectionLost` if the connection ends first."""
        if self._lost is not None:
            raise ConnectionLost(self._lost)
        request_id = f"r{next(_ids)}"
        future: asyncio.Future[JsonDict] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self.ws.send(json.dumps({**frame, "id": request_id}))
            return await future
        except ConnectionClosed as exc:
            raise ConnectionLost(f"connection closed: {exc}") from exc
        finally:
            self._pending.pop(request_id, None)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning

    def abort(self) -> None:
        """Drop the transport without a close handshake."""
        self.ws.transport.abort()

    async def close(self) -> None:
        await self.ws.close()

    async def run(self, on_frame: Callable[[JsonDict], None]) -> int:
        """Dispatch frames until the connection ends (or is silent for 2.5 heartbeat
        intervals); fails the pending requests and returns the close code."""
        try:
            while True:
                silence = self.heartbeat_interval * 2.5 if self.heartbeat_interval else None
                async with asyncio.timeout(silence):
                    message = await self.ws.recv()
                await self._dispatch(message, on_frame)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else ABNORMAL_CLOSE_CODE
        except TimeoutError:
            log.warning("realtime connection silent for too long; dropping it")
            self.abort()
            code = ABNORMAL_CLOSE_CODE
        self.fail_pending(f"connection closed ({code})")
        return code

    def fail_pending(self, reason: str) -> None:
        self._lost = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ConnectionLost(reason))

    async def _dispatch(self, message: str | bytes, on_frame: Callable[[JsonDict], None]) -> None:
        try:
            frame: Any = json.loads(message)
        except ValueError:
            log.warning("realtime: ignoring a non-JSON frame")
            return
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "heartbeat":
            await self.ws.send(_HEARTBEAT)
            return
        try:
            on_frame(frame)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("realtime: ignoring a malformed %s frame: %s", kind, exc)
            return
        request_id = frame.get("id")
        future = self._pending.get(request_id) if isinstance(request_id, str) else None
        if future is None or future.done():
            if kind == "error":
                log.warning("realtime error frame: %s", frame)
        elif kind == "error":
            code, text = str(frame.get("code")), str(frame.get("message", ""))
            future.set_exception(RealtimeError(code, text))
        else:
            future.set_result(frame)
