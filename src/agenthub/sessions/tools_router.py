"""`/v1/sessions/{session_id}/tools` routes: the tool executions of a session."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, status

from agenthub.core.errors import problem_responses
from agenthub.core.pagination import Page, PageParams, paging
from agenthub.db.session import DbSession
from agenthub.sessions import tools
from agenthub.sessions.deps import OwnedSession
from agenthub.sessions.schemas import TOOL_TYPE_PATTERN, ToolCreate, ToolOut, ToolPatch, ToolStatus
from agenthub.web.idempotency import idempotent

router = APIRouter(prefix="/{session_id}/tools", tags=["tool executions"])

Chronological = Annotated[PageParams, Depends(paging("asc"))]
ToolId = Annotated[str, Path(max_length=64)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ToolOut,
    responses=problem_responses(404, 409, 422),
)
@idempotent(status.HTTP_201_CREATED)
async def create_tool(body: ToolCreate, chat: OwnedSession, db: DbSession) -> ToolOut:
    """Record a tool call (`pending`, or `running` from `started_at`, default now)."""

    tool = await tools.create_tool(
        db,
        chat,
        tool_name=body.tool_name,
        tool_type=body.tool_type,
        tool_input=body.input,
        status=body.status,
        message_id=body.message_id,
        started_at=body.started_at,
    )
    return ToolOut.model_validate(tool)


@router.get("", response_model=Page[ToolOut], responses=problem_responses(404, 422))
async def list_tools(
    chat: OwnedSession,
    db: DbSession,
    paging: Chronological,
    tool_type: Annotated[str | None, Query(pattern=TOOL_TYPE_PATTERN)] = None,
    tool_status: Annotated[ToolStatus | None, Query(alias="status")] = None,
) -> Page[ToolOut]:
    """Tool executions oldest first, filtered by `tool_type` and `status`."""
    rows, has_more, cursor = await tools.list_tools(
        db, chat, paging, tool_type=tool_type, status=tool_status
    )
    return Page(
        data=[ToolOut.model_validate(r) for r in rows], has_more=has_more, next_cursor=cursor
    )


@router.get("/{tool_id}", response_model=ToolOut, responses=problem_responses(404))
async def get_tool(chat: OwnedSession, db: DbSession, tool_id: ToolId) -> ToolOut:
    return ToolOut.model_validate(await tools.get_tool(db, chat, tool_id))


@router.patch("/{tool_id}", response_model=ToolOut, responses=problem_responses(404, 409, 422))
async def patch_tool(
    body: ToolPatch, chat: OwnedSession, db: DbSession, tool_id: ToolId
) -> ToolOut:
    """Progress the execution: `running`, then `succeeded` or `failed` with `output`/`error`.

    Reaching a final status sets `finished_at` and `duration_ms`; a final execution admits
    no further change (409), nor does a step back.
    """
    tool = await tools.get_tool(db, chat, tool_id)
    tools.progress_tool(db, chat, tool, body.model_dump(exclude_unset=True))
    return ToolOut.model_validate(tool)
