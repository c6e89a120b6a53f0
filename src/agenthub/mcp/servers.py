"""The MCP servers of `AGENTHUB_MCP_SERVERS`, as one process uses them.

A server's session is opened on first use and kept for the next calls. The SDK's client must
be entered and left in one task, so each open session lives in a task of its own, which holds
it until the session is closed or dies. Each use asks the server for its tools first: one
that died since is started again before the call is sent, so no call is lost to a crash
between calls. A server that cannot start is reported with its error, and the next use tries
again. The official SDK (`mcp`) is imported only when a session is opened: most deployments
configure no server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import structlog

from agenthub.config import McpHttpServer, McpServerConfig, McpStdioServer

if TYPE_CHECKING:
    from mcp import Client

log = structlog.get_logger("agenthub.mcp")

Status = Literal["ready", "failed", "closed"]
PROBE_SECONDS = 5.0  # a live session lists its tools before each use within this
START_SECONDS = 30.0  # a server starts and lists its tools within this


@dataclass(frozen=True)
class Tool:
    name: str
    description: str | None
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolResult:
    """A tool's answer as text for the model; `is_error` when the tool reported a failure."""

    text: str
    is_error: bool


class ServerUnavailable(Exception):
    """The server could not be started or reached; the message says why."""


@dataclass
class ServerState:
    name: str
    transport: Literal["stdio", "http"]
    status: Status = "closed"
    error: str | None = None
    tools: list[Tool] = field(default_factory=list)


class McpServer:
    """One configured server and its session (see the module docstring)."""

    def __init__(self, name: str, config: McpServerConfig, timeout: float) -> None:
        self.config = config
        self.timeout = timeout
        transport: Literal["stdio", "http"] = (
            "stdio" if isinstance(config, McpStdioServer) else "http"
        )
        self.state = ServerState(name, transport)
        self._client: Client | None = None
        self._holder: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._opening = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return self._holder is not None and not self._holder.done() and self._client is not None

    async def open(self) -> list[Tool]:
        """The server's tools, opening its session if it has none, or one whose server no
        longer answers (it died since the last use)."""
        async with self._opening:
            if not self.alive or not await self._answers():
                await self._start()
            return self.state.tools

    async def _answers(self) -> bool:
        """Whether the session's server still answers (listing its tools, which refreshes
        them: a server may change its tools)."""
        client = self._client
        if client is None:
            return False
        try:
            listed = await asyncio.wait_for(client.list_tools(), min(PROBE_SECONDS, self.timeout))
        except Exception:
            return False
        self.state.tools = _tools(listed.tools)
        return True

    async def call(self, tool: str, arguments: Mapping[str, Any]) -> ToolResult:
        """Call `tool`; raises `ServerUnavailable` when the server cannot be reached and
        `TimeoutError` after `timeout` seconds."""
        await self.open()
        client = self._client
        if client is None:
            raise ServerUnavailable(self.state.error or "not connected")
        try:
            result = await asyncio.wait_for(client.call_tool(tool, dict(arguments)), self.timeout)
        except TimeoutError:
            raise
        except Exception as exc:
            # The session is in doubt: the next call opens a new one.
            await self.close(error=_describe(exc))
            raise ServerUnavailable(_describe(exc)) from exc
        return ToolResult(_text(result.content, result.structured_content), result.is_error)

    async def close(self, error: str | None = None) -> None:
        """End the session (its subprocess with it)."""
        holder, self._holder = self._holder, None
        if holder is not None:
            self._stop.set()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(holder, START_SECONDS)
            if not holder.done():
                holder.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await holder
        self._client = None
        self.state.status = "failed" if error else "closed"
        self.state.error = error

    async def _start(self) -> None:
        await self.close()
        self._stop = asyncio.Event()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._holder = asyncio.create_task(self._hold(ready), name=f"mcp-{self.state.name}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), START_SECONDS)
        except TimeoutError:
            await self.close(error=f"no answer within {START_SECONDS:g} s")
        except Exception as exc:
            await self.close(error=_describe(exc))
        if self.state.status == "failed":
            log.warning("mcp_server_failed", server=self.state.name, error=self.state.error)

    async def _hold(self, ready: asyncio.Future[None]) -> None:
        """Open the session, list the tools, then hold the session open until told to stop."""
        from mcp import Client

        try:
            async with Client(_target(self.config)) as client:
                self.state.tools = _tools((await client.list_tools()).tools)
                self._client = client
                self.state.status, self.state.error = "ready", None
                ready.set_result(None)
                await self._stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning("mcp_session_ended", server=self.state.name, error=_describe(exc))
        finally:
            self._client = None


class McpServers:
    """Every configured server, by name."""

    def __init__(self, configs: Mapping[str, McpServerConfig], *, timeout: float) -> None:
        self._servers = {
            name: McpServer(name, config, timeout) for name, config in sorted(configs.items())
        }

    @property
    def names(self) -> list[str]:
        return list(self._servers)

    def get(self, name: str) -> McpServer | None:
        return self._servers.get(name)

    async def states(self) -> list[ServerState]:
        """Every server's state, each opened (concurrently) if it has no live session."""
        await asyncio.gather(*(server.open() for server in self._servers.values()))
        return [server.state for server in self._servers.values()]

    async def close(self) -> None:
        await asyncio.gather(*(server.close() for server in self._servers.values()))


def _target(config: McpServerConfig) -> Any:
    """What the SDK's `Client` connects to."""
    if isinstance(config, McpHttpServer):
        if not config.headers:
            return config.url
        return _http_with_headers(
            config.url, {k: v.get_secret_value() for k, v in config.headers.items()}
        )
    from mcp.client.stdio import StdioServerParameters

    env = {k: v.get_secret_value() for k, v in config.env.items()}
    return StdioServerParameters(command=config.command, args=config.args, env=env or None)


@contextlib.asynccontextmanager
async def _http_with_headers(url: str, headers: dict[str, str]) -> AsyncIterator[Any]:
    """The Streamable HTTP transport on a client of ours that sends `headers` (the SDK's
    timeouts: 30 s, and 300 s to read a held stream)."""
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    timeout = httpx2.Timeout(30, read=300)
    async with (
        httpx2.AsyncClient(headers=headers, timeout=timeout) as http,
        streamable_http_client(url, http_client=http) as streams,
    ):
        yield streams


def _tools(listed: list[Any]) -> list[Tool]:
    return [Tool(t.name, t.description, dict(t.input_schema)) for t in listed]


def _text(content: list[Any], structured: Any) -> str:
    """A result's text blocks joined, or its structured content as JSON when it has no text."""
    texts = [block.text for block in content if getattr(block, "type", None) == "text"]
    if texts:
        return "\n".join(texts)
    import json

    return json.dumps(structured) if structured is not None else ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return str(exc) or type(exc).__name__
