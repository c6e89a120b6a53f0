"""A real loopback HTTP/1.1 server speaking the OpenAI Chat Completions streaming protocol.

It stands in for an LLM provider: `POST /v1/chat/completions` answers with SSE
`chat.completion.chunk` objects (role, content, tool calls with their arguments split across
chunks, a finish reason, a usage chunk when `stream_options.include_usage`) and `data: [DONE]`;
`GET /v1/models` lists one model. Each chat request takes the next scripted `Behaviour`
(a plain reply when none is left); every request is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

SERVER_VERSION = "loopback-openai 0.9"
DEFAULT_REPLY = "Hello from the loopback server."


@dataclass
class Behaviour:
    """How the server answers one chat request.

    `status` other than 200 answers with an OpenAI error body; `ending` is `done` (finish
    reason, usage, `[DONE]`), `drop` (the socket is closed mid-stream) or `truncate` (the body
    ends cleanly but without a finish reason or `[DONE]`)."""

    text: str = DEFAULT_REPLY
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    tool_calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments)
    delay: float = 0.0  # between chunks
    ending: Literal["done", "drop", "truncate"] = "done"
    usage: tuple[int, int] = (11, 7)


def reply(text: str, **kwargs: Any) -> Behaviour:
    return Behaviour(text=text, **kwargs)


def rate_limited(retry_after: str = "2") -> Behaviour:
    return Behaviour(status=429, headers={"Retry-After": retry_after})


def failing(status: int = 500) -> Behaviour:
    return Behaviour(status=status)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


def words(text: str) -> list[str]:
    """`text` in word pieces that join back to it (as a model streams tokens)."""
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word if not pieces else " " + word)
    return [p for p in pieces if p]


class OpenAIServer:
    """Start with `async with OpenAIServer() as server:`; point the runner at `base_url`."""

    def __init__(self) -> None:
        self.script: deque[Behaviour] = deque()
        self.requests: list[Received] = []
        self.disconnected = asyncio.Event()  # a client hung up while a reply was streaming
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    def then(self, *behaviours: Behaviour) -> None:
        self.script.extend(behaviours)

    @property
    def chats(self) -> list[Received]:
        return [r for r in self.requests if r.path == "/v1/chat/completions"]

    async def __aenter__(self) -> OpenAIServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; False when the connection is done."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {
            k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ln)
        }
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        body: Any = json.loads(raw) if raw else {}
        self.requests.append(Received(method, path, headers, body))
        if method == "GET" and path == "/v1/models":
            models = {
                "object": "list",
                "data": [
                    {"id": "loopback-model", "object": "model", "created": 0, "owned_by": "tests"}
                ],
            }
            await _send_json(writer, 200, models, {"x-server-version": SERVER_VERSION})
            return True
        if method != "POST" or path != "/v1/chat/completions":
            await _send_json(writer, 404, _error("not found", "invalid_request_error"))
            return True
        behaviour = self.script.popleft() if self.script else Behaviour()
        if behaviour.status != 200:
            kind = "rate_limit_exceeded" if behaviour.status == 429 else "server_error"
            await _send_json(
                writer,
                behaviour.status,
                _error(f"scripted {behaviour.status}", kind),
                behaviour.headers,
            )
            return True
        return await self._stream(reader, writer, behaviour, body)

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        behaviour: Behaviour,
        body: dict[str, Any],
    ) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        watcher = asyncio.ensure_future(reader.read(1))  # b"": the client hung up
        try:
            events = list(_events(behaviour, body))
            for index, event in enumerate(events):
                if behaviour.ending == "drop" and index == max(len(events) // 2, 1):
                    writer.transport.abort()
                    return False
                if index and behaviour.delay:
                    await asyncio.wait({watcher}, timeout=behaviour.delay)
                if watcher.done():
                    self.disconnected.set()
                    return False
                data = f"data: {event}\n\n".encode()
                writer.write(b"%x\r\n%s\r\n" % (len(data), data))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            return True
        finally:
            watcher.cancel()
            if watcher.done() and not watcher.cancelled():
                watcher.exception()  # retrieved: a reset connection is expected here


def _events(behaviour: Behaviour, body: dict[str, Any]) -> list[str]:
    """The SSE data lines of one reply."""
    model = body.get("model", "unknown")

    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        return json.dumps(
            {
                "id": "chatcmpl-loopback",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "system_fingerprint": None,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
        )

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in words(behaviour.text)]
    for index, (name, arguments) in enumerate(behaviour.tool_calls):
        head = {
            "index": index,
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        events.append(chunk({"tool_calls": [head]}))
        for start in range(0, len(arguments), 5):  # split mid-token, as OpenAI does
            piece = {"index": index, "function": {"arguments": arguments[start : start + 5]}}
            events.append(chunk({"tool_calls": [piece]}))
    if behaviour.ending == "truncate":
        return events
    events.append(chunk({}, "tool_calls" if behaviour.tool_calls else "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        prompt, completion = behaviour.usage
        events.append(
            json.dumps(
                {
                    "id": "chatcmpl-loopback",
                    "object": "chat.completion.chunk",
                    "created": 1700000000,
                    "model": model,
                    "choices": [],
                    "usage": {
                        "prompt_tokens": prompt,
                        "completion_tokens": completion,
                        "total_tokens": prompt + completion,
                    },
                }
            )
        )
    events.append("[DONE]")
    return events


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


async def _send_json(
    writer: asyncio.StreamWriter, status: int, payload: Any, headers: dict[str, str] | None = None
) -> None:
    data = json.dumps(payload).encode()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(
        f"HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n{extra}\r\n".encode()
        + data
    )
    await writer.drain()
