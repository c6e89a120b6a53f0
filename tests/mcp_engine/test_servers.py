"""The MCP servers of `AGENTHUB_MCP_SERVERS`, against a real MCP server built with the SDK
(`tools_server.py`) as a subprocess: over stdio, and over Streamable HTTP."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from agenthub.config import McpHttpServer, McpStdioServer
from agenthub.mcp.servers import McpServers, ServerUnavailable
from conftest import asgi_client, custom_app
from processes import free_port
from support import PASSWORD, assert_problem, register

SERVER = Path(__file__).with_name("tools_server.py")
TOOLS = ["add", "fail", "sleep", "pid"]


def stdio(**env: str) -> McpStdioServer:
    return McpStdioServer(command=sys.executable, args=[str(SERVER)], env=env)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def gone(pid: int) -> bool:
    """Whether the process `pid` ends within 10 s."""
    for _ in range(200):
        if not alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
async def servers() -> AsyncIterator[McpServers]:
    configured = {"tools": stdio(), "missing": McpStdioServer(command="/nonexistent/mcp-server")}
    servers = McpServers(configured, timeout=20)
    try:
        yield servers
    finally:
        await servers.close()


@pytest.fixture
def http_server() -> Iterator[str]:
    """The same server over Streamable HTTP; its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
async def mcp_app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    configured = {
        "tools": stdio().model_dump(mode="json"),
        "missing": {"command": "/nonexistent/mcp-server"},
    }
    async with custom_app(database_url, tmp_path, mcp_servers=configured) as app:
        yield app


async def test_tools_run_over_stdio(servers: McpServers) -> None:
    server = servers.get("tools")
    assert server is not None
    assert [tool.name for tool in await server.open()] == TOOLS
    added = await server.call("add", {"a": 2, "b": 3})
    assert (added.text, added.is_error) == ("5.0", False)
    failed = await server.call("fail", {"reason": "out of paper"})
    assert failed.is_error
    invalid = await server.call("add", {"a": "two"})
    assert invalid.is_error and "validation error" in invalid.text


async def test_a_server_that_died_is_started_again(servers: McpServers) -> None:
    server = servers.get("tools")
    assert server is not None
    first = int((await server.call("pid", {})).text)
    os.kill(first, 9)
    assert await gone(first)
    second = int((await server.call("pid", {})).text)
    assert second != first and alive(second)
    await servers.close()
    assert server.state.status == "closed"
    assert await gone(second)


async def test_a_slow_tool_times_out() -> None:
    servers = McpServers({"tools": stdio()}, timeout=1)
    try:
        server = servers.get("tools")
        assert server is not None
        await server.open()
        with pytest.raises(TimeoutError):
            await server.call("sleep", {"seconds": 5})
    finally:
        await servers.close()


async def test_a_server_that_cannot_start_is_reported(servers: McpServers) -> None:
    states = {state.name: state for state in await servers.states()}
    assert states["tools"].status == "ready"
    assert states["missing"].status == "failed"
    assert states["missing"].error
    server = servers.get("missing")
    assert server is not None
    with pytest.raises(ServerUnavailable):
        await server.call("add", {"a": 1, "b": 2})


async def test_tools_run_over_streamable_http(http_server: str) -> None:
    servers = McpServers({"remote": McpHttpServer(url=http_server)}, timeout=20)
    try:
        server = servers.get("remote")
        assert server is not None
        assert [tool.name for tool in await server.open()] == TOOLS
        assert server.state.transport == "http"
        assert (await server.call("add", {"a": 1.5, "b": 1})).text == "2.5"
    finally:
        await servers.close()


async def test_the_servers_are_listed_with_their_tools(mcp_app: FastAPI) -> None:
    async with asgi_client(mcp_app) as client:
        assert_problem(await client.get("/v1/mcp/servers"), 401)
        account = await register(client, "mcp@example.com", PASSWORD)
        response = await client.get("/v1/mcp/servers", headers=account.headers)
    assert response.status_code == 200, response.text
    listed = {server["name"]: server for server in response.json()["data"]}
    assert list(listed) == ["missing", "tools"]
    tools = listed["tools"]
    assert (tools["transport"], tools["status"], tools["error"]) == ("stdio", "ready", None)
    assert [tool["name"] for tool in tools["tools"]] == TOOLS
    add = tools["tools"][0]
    assert add["description"] == "Add two numbers."
    assert add["input_schema"]["required"] == ["a", "b"]
    assert listed["missing"]["status"] == "failed"
    assert listed["missing"]["error"] and listed["missing"]["tools"] == []
