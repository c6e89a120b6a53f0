"""`GET /v1/mcp/servers`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class McpToolOut(BaseModel):
    name: str
    description: str | None
    input_schema: dict[str, Any] = Field(description="The JSON Schema of the tool's arguments")


class McpServerOut(BaseModel):
    name: str
    transport: Literal["stdio", "http"]
    status: Literal["ready", "failed", "closed"] = Field(
        description="`ready`: its session is open; `failed`: it could not start (see `error`)"
    )
    error: str | None
    tools: list[McpToolOut]


class McpServerList(BaseModel):
    data: list[McpServerOut]
