"""A WebSocket subscriber: one `/v1/ws` connection (docs/realtime.md) that subscribes to the
sessions its user writes into and records the `message.created` events it receives."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from agenthub.client.connection import ws_url
from agenthub.load.recorder import Recorder

TIMEOUT_SECONDS = 10.0


class Refused(Exception):
    """The server answered a frame with an `error` frame."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Subscriber:
    """Connects once with its user's token; a failure is recorded as a WebSocket error and
    leaves the subscriber out of the expected deliveries."""

    def __init__(self, base_url: str, recorder: Recorder) -> None:
        self.base_url = base_url
        self.recorder = recorder
        self.sessions: list[str] = []  # subscriptions the server confirmed
        self.seen: set[str] = set()  # ids of the messages whose `message.created` arrived
        self.started = False
        self.connected = False  # the server said `connected`
        self._connection: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[None]] = {}
        self._frame_ids = itertools.count(1)
        self._closing = False

    async def connect(self, token: str) -> None:
        """Open the connection and wait for the server's `connected` frame."""
        self.started = True
        url = f"{ws_url(self.base_url)}?token={quote(token, safe='')}"
        try:
            connection = await connect(url, open_timeout=TIMEOUT_SECONDS)
        except InvalidStatus as exc:
            self.recorder.ws_error(f"connect {exc.response.status_code}")
            return
        except (OSError, TimeoutError, WebSocketException) as exc:
            self.recorder.ws_error(f"connect {type(exc).__name__}")
            return
        try:
            hello = json.loads(await asyncio.wait_for(connection.recv(), TIMEOUT_SECONDS))
        except ConnectionClosed as exc:
            self.recorder.ws_error(f"closed {exc.rcvd.code if exc.rcvd else 1006}")
            return
        except TimeoutError:
            self.recorder.ws_error("connect timeout")
            await connection.close()
            return
        if hello.get("type") != "connected":
            self.recorder.ws_error(f"connect {hello.get('type')}")
            await connection.close()
            return
        self.connected = True
        self._connection = connection
        self._reader = asyncio.create_task(self._read(connection))

    async def subscribe(self, session_id: str) -> None:
        """Subscribe to `session:{session_id}` and wait for the server's confirmation."""
        connection = self._connection
        if connection is None:
            return
        frame_id = f"sub-{next(self._frame_ids)}"
        confirmed = asyncio.get_running_loop().create_future()
        self._pending[frame_id] = confirmed
        frame = {"type": "subscribe", "id": frame_id, "channel": f"session:{session_id}"}
        try:
            await connection.send(json.dumps(frame))
            await asyncio.wait_for(confirmed, TIMEOUT_SECONDS)
        except Refused as exc:
            self.recorder.ws_error(f"subscribe {exc.code}")
            return
        except TimeoutError:
            self.recorder.ws_error("subscribe timeout")
            return
        except (ConnectionClosed, ConnectionAbortedError):
            return  # the reader records the close
        finally:
            self._pending.pop(frame_id, None)
        self.sessions.append(session_id)

    async def close(self) -> None:
        self._closing = True
        if self._connection is not None:
            await self._connection.close()
        if self._reader is not None:
            await self._reader

    async def _read(self, connection: ClientConnection) -> None:
        try:
            async for raw in connection:
                frame: dict[str, Any] = json.loads(raw)
                if frame.get("type") == "heartbeat":
                    await connection.send('{"type": "heartbeat"}')  # not silent, not closed
                else:
                    self._handle(frame)
        except ConnectionClosed:
            pass
        self._connection = None
        for pending in self._pending.values():
            if not pending.done():
                pending.set_exception(ConnectionAbortedError())
        if not self._closing:
            self.recorder.ws_error(f"closed {connection.close_code or 1006}")

    def _handle(self, frame: dict[str, Any]) -> None:
        match frame.get("type"):
            case "event" if frame.get("event") == "message.created":
                received = time.time()
                message_id = frame["data"]["id"]
                if message_id in self.seen:
                    self.recorder.duplicates += 1
                    return
                self.seen.add(message_id)
                published = datetime.fromisoformat(frame["ts"]).timestamp()
                self.recorder.delivery(max(0.0, received - published))
            case "subscribed":
                self._settle(frame.get("id"), None)
            case "error":
                code = str(frame.get("code"))
                if not self._settle(frame.get("id"), Refused(code)):
                    self.recorder.ws_error(f"error {code}")

    def _settle(self, frame_id: Any, failure: Refused | None) -> bool:
        pending = self._pending.get(frame_id) if isinstance(frame_id, str) else None
        if pending is None or pending.done():
            return False
        if failure is None:
            pending.set_result(None)
        else:
            pending.set_exception(failure)
        return True
