"""`GET /v1/mcp/servers`: the configured MCP servers, their state and their tools."""

from __future__ import annotations

from fastapi import APIRouter, Request

from agenthub.core.errors import problem_responses
from agenthub.mcp.schemas import McpServerList, McpServerOut, McpToolOut
from agenthub.mcp.servers import McpServers
from agenthub.web.caller import CurrentUser

router = APIRouter(prefix="/v1/mcp", tags=["mcp"], responses=problem_responses(401))


@router.get("/servers", response_model=McpServerList)
async def list_servers(request: Request, _: CurrentUser) -> McpServerList:
    """Each server of `AGENTHUB_MCP_SERVERS` with its tools; a server without a live session
    is started first, and one that cannot start is listed `failed` with its error."""
    servers: McpServers = request.app.state.mcp
    return McpServerList(
        data=[
            McpServerOut(
                name=state.name,
                transport=state.transport,
                status=state.status,
                error=state.error,
                tools=[McpToolOut(**vars(tool)) for tool in state.tools],
            )
            for state in await servers.states()
        ]
    )
