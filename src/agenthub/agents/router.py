"""`/v1/agents` routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Path, Query, Response, UploadFile, status

from agenthub.agents import service
from agenthub.agents.config import MAX_CONFIG_BYTES
from agenthub.agents.schemas import (
    TYPE_PATTERN,
    AgentBulk,
    AgentCreate,
    AgentMetrics,
    AgentOut,
    AgentPatch,
    AgentStatus,
    BulkOutcome,
    LogLine,
)
from agenthub.cache.base import AppCache
from agenthub.config import RunnerName
from agenthub.core.errors import problem_responses
from agenthub.core.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    CursorPaging,
    Page,
    SortQuery,
)
from agenthub.db.session import DbSession
from agenthub.web.caller import AppSettings, CurrentUser
from agenthub.web.idempotency import idempotent

router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=problem_responses(401))

AgentId = Annotated[str, Path(max_length=64, description="An agent id (`agt_...`)")]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=AgentOut,
    responses=problem_responses(409, 422),
)
@idempotent(status.HTTP_201_CREATED)
async def create_agent(
    body: AgentCreate, user: CurrentUser, db: DbSession, settings: AppSettings
) -> AgentOut:
    """Create an agent; `project_id`, when given, must be one of the caller's projects, and
    an MCP tool's `server` one of the server's `AGENTHUB_MCP_SERVERS`."""
    agent = await service.create_agent(
        db, user.id, body.model_dump(), mcp_servers=settings.mcp_servers
    )
    return AgentOut.model_validate(agent)


@router.get("", response_model=Page[AgentOut], responses=problem_responses(422))
async def list_agents(
    user: CurrentUser,
    db: DbSession,
    paging: CursorPaging,
    agent_type: Annotated[str | None, Query(alias="type", pattern=TYPE_PATTERN)] = None,
    agent_status: Annotated[AgentStatus | None, Query(alias="status")] = None,
    runner: RunnerName | None = None,
    project_id: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[
        str | None,
        Query(max_length=200, description="Case-insensitive text in name or system prompt"),
    ] = None,
    sort: SortQuery = "-created_at",
) -> Page[AgentOut]:
    """The caller's agents, newest first unless `sort` says otherwise."""
    filters = {
        "type": agent_type,
        "status": agent_status,
        "runner": runner,
        "project_id": project_id,
    }
    rows, has_more, cursor = await service.list_agents(
        db, user.id, paging, sort=sort, filters=filters, q=q
    )
    return Page(
        data=[AgentOut.model_validate(a) for a in rows], has_more=has_more, next_cursor=cursor
    )


@router.post("/bulk", response_model=BulkOutcome, responses=problem_responses(422))
async def bulk_agents(
    body: AgentBulk, user: CurrentUser, db: DbSession, settings: AppSettings
) -> BulkOutcome:
    """Start, stop, update or delete up to 100 agents; each id succeeds or fails on its own
    (an id that is not one of the caller's agents fails with 404)."""
    patch = body.patch.model_dump(exclude_unset=True) if body.patch is not None else None
    results = await service.bulk(
        db, user.id, body.action, body.ids, patch, mcp_servers=settings.mcp_servers
    )
    succeeded = sum(r.ok for r in results)
    return BulkOutcome(results=results, succeeded=succeeded, failed=len(results) - succeeded)


@router.get("/{agent_id}", response_model=AgentOut, responses=problem_responses(404))
async def get_agent(agent_id: AgentId, user: CurrentUser, db: DbSession) -> AgentOut:
    return AgentOut.model_validate(await service.get_agent(db, user.id, agent_id))


@router.patch("/{agent_id}", response_model=AgentOut, responses=problem_responses(404, 422))
async def update_agent(
    agent_id: AgentId, body: AgentPatch, user: CurrentUser, db: DbSession, settings: AppSettings
) -> AgentOut:
    """Change the fields sent (emits `agent.updated`); `options` and `tools` replace what was
    there."""
    agent = await service.update_agent(
        db,
        user.id,
        agent_id,
        body.model_dump(exclude_unset=True),
        mcp_servers=settings.mcp_servers,
    )
    return AgentOut.model_validate(agent)


@router.delete(
    "/{agent_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404)
)
async def delete_agent(agent_id: AgentId, user: CurrentUser, db: DbSession) -> None:
    """Delete the agent; its sessions remain, with `agent_id` null."""
    await service.delete_agent(db, user.id, agent_id)


@router.post(
    "/{agent_id}/config",
    response_model=AgentOut,
    responses=problem_responses(404, 413, 415, 422),
)
async def upload_config(
    agent_id: AgentId,
    user: CurrentUser,
    db: DbSession,
    settings: AppSettings,
    file: Annotated[
        UploadFile,
        File(
            description="A JSON or YAML object with keys runner, model, system_prompt, options, "
            "tools"
        ),
    ],
) -> AgentOut:
    """Replace the agent's runner settings by an uploaded config file (at most 1 MiB).

    The file holds one object with `runner` (required), `model`, `system_prompt`, `options`
    and `tools`; keys it leaves out are reset. A syntax error is a 422 whose detail gives the
    parser's message with line and column.
    """
    data = await file.read(MAX_CONFIG_BYTES + 1)
    agent = await service.replace_config(
        db,
        user.id,
        agent_id,
        data,
        filename=file.filename,
        content_type=file.content_type,
        mcp_servers=settings.mcp_servers,
    )
    return AgentOut.model_validate(agent)


@router.get("/{agent_id}/metrics", response_model=AgentMetrics, responses=problem_responses(404))
async def agent_metrics(
    agent_id: AgentId, user: CurrentUser, db: DbSession, cache: AppCache
) -> Response:
    """Runs, failures, tokens and run latency percentiles (null until the agent has run).
    Cached until your next change (`X-Cache: hit|miss`)."""
    return await cache.respond(
        user.id, f"agents.metrics:{agent_id}", lambda: service.agent_metrics(db, user.id, agent_id)
    )


@router.get("/{agent_id}/logs", response_model=Page[LogLine], responses=problem_responses(404, 422))
async def agent_logs(
    agent_id: AgentId,
    user: CurrentUser,
    db: DbSession,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
) -> Page[LogLine]:
    """Recent run log lines of the agent, oldest first."""
    lines = await service.agent_logs(db, user.id, agent_id, limit)
    return Page(data=lines, has_more=False, next_cursor=None)
