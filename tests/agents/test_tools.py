"""Agents' tools: MCP servers of `AGENTHUB_MCP_SERVERS` and client functions, through create,
read, patch, bulk update and config upload; every way a list of tools can be wrong is 422."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agents.test_router import URL, bulk, create, upload
from conftest import asgi_client, custom_app
from support import PASSWORD, Account, assert_problem, error_fields, register

CALC = {"type": "mcp", "server": "calc", "allowed_tools": ["add"], "requires_approval": False}
LOOKUP = {
    "type": "function",
    "name": "lookup_order",
    "description": "Find an order by its number",
    "parameters": {
        "type": "object",
        "properties": {"number": {"type": "string"}},
        "required": ["number"],
    },
    "requires_approval": True,
}


@pytest.fixture
async def client(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A server with the MCP servers `calc` and `search` configured (never started here:
    an agent's tools name them)."""
    servers = {
        "calc": {"command": "python", "args": ["calc.py"]},
        "search": {"url": "http://127.0.0.1:9/mcp"},
    }
    async with custom_app(database_url, tmp_path, mcp_servers=servers) as app:
        async with asgi_client(app) as c:
            yield c


@pytest.fixture
async def account(client: httpx.AsyncClient) -> Account:
    return await register(client, "tools@example.com", PASSWORD)


async def test_tools_are_stored_read_and_replaced(
    client: httpx.AsyncClient, account: Account
) -> None:
    plain = await create(client, account)
    assert plain["tools"] == []
    agent = await create(client, account, tools=[CALC, LOOKUP, {"type": "mcp", "server": "search"}])
    everything = {"type": "mcp", "server": "search", "allowed_tools": None}
    assert agent["tools"] == [CALC, LOOKUP, {**everything, "requires_approval": False}]
    read = await client.get(f"{URL}/{agent['id']}", headers=account.headers)
    assert read.json()["tools"] == agent["tools"]
    patched = await client.patch(
        f"{URL}/{agent['id']}", json={"tools": [LOOKUP]}, headers=account.headers
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["tools"] == [LOOKUP]
    untouched = await client.patch(
        f"{URL}/{agent['id']}", json={"name": "Renamed"}, headers=account.headers
    )
    assert untouched.json()["tools"] == [LOOKUP]
    updated = await bulk(
        client, account, action="update", ids=[agent["id"]], patch={"tools": [CALC]}
    )
    assert updated.json()["results"][0]["agent"]["tools"] == [CALC]


async def test_a_function_gets_an_empty_object_schema_by_default(
    client: httpx.AsyncClient, account: Account
) -> None:
    agent = await create(client, account, tools=[{"type": "function", "name": "ping"}])
    assert agent["tools"] == [
        {
            "type": "function",
            "name": "ping",
            "description": None,
            "parameters": {"type": "object", "properties": {}},
            "requires_approval": False,
        }
    ]


BAD_TOOLS: list[tuple[list[dict[str, Any]], str]] = [
    ([{"type": "mcp", "server": "nope"}], "tools.0.server"),
    ([CALC, {"type": "function", "name": "add"}], "tools"),
    ([LOOKUP, {**LOOKUP, "description": "again"}], "tools"),
    ([CALC, {"type": "mcp", "server": "calc"}], "tools"),
    ([{**LOOKUP, "parameters": {"type": "nonsense"}}], "tools.0.function.parameters"),
    ([{"type": "function", "name": "has space"}], "tools.0.function.name"),
    ([{"type": "shell", "command": "rm"}], "tools.0"),
    ([{**CALC, "allowed_tools": ["add", "add"]}], "tools"),
]


async def test_bad_tools_are_422_naming_the_field(
    client: httpx.AsyncClient, account: Account
) -> None:
    agent = await create(client, account)
    for tools, field in BAD_TOOLS:
        body = {"name": "A", "type": "primary", "tools": tools}
        created = assert_problem(await client.post(URL, json=body, headers=account.headers), 422)
        assert any(f.startswith(field) for f in error_fields(created)), (tools, created)
        patched = await client.patch(
            f"{URL}/{agent['id']}", json={"tools": tools}, headers=account.headers
        )
        assert any(f.startswith(field) for f in error_fields(assert_problem(patched, 422)))
    listed = await client.get(URL, headers=account.headers)
    assert [a["tools"] for a in listed.json()["data"]] == [[]]


async def test_config_upload_sets_the_tools(client: httpx.AsyncClient, account: Account) -> None:
    agent = await create(client, account, tools=[LOOKUP])
    config = {"runner": "echo", "tools": [CALC]}
    uploaded = await upload(client, account, agent["id"], json.dumps(config).encode(), "a.json")
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json()["tools"] == [CALC]
    reset = await upload(client, account, agent["id"], b"runner: echo\n")
    assert reset.json()["tools"] == []
    unknown = {"runner": "echo", "tools": [{"type": "mcp", "server": "nope"}]}
    refused = await upload(client, account, agent["id"], json.dumps(unknown).encode(), "a.json")
    assert "tools.0.server" in error_fields(assert_problem(refused, 422))
    read = await client.get(f"{URL}/{agent['id']}", headers=account.headers)
    assert read.json()["tools"] == []
