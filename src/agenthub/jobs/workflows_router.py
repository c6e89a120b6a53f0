"""`/v1/workflows` routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from agenthub.core.errors import problem_responses
from agenthub.core.pagination import CursorPaging, Page
from agenthub.db.session import DbSession
from agenthub.jobs import workflows
from agenthub.jobs.workflow_schemas import WorkflowCreate, WorkflowOut
from agenthub.web.caller import AppSettings, CurrentUser
from agenthub.web.idempotency import idempotent

router = APIRouter(prefix="/v1/workflows", tags=["workflows"], responses=problem_responses(401))

WorkflowId = Annotated[str, Path(max_length=64, description="A workflow id (`wfl_...`)")]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WorkflowOut,
    responses=problem_responses(422),
)
@idempotent(status.HTTP_202_ACCEPTED)
async def create_workflow(
    body: WorkflowCreate,
    user: CurrentUser,
    db: DbSession,
    settings: AppSettings,
) -> WorkflowOut:
    """Create the workflow's steps as jobs, all or none: steps without `depends_on` are
    queued, the others wait until their dependencies completed; a failed step cancels its
    dependents (`dependency_failed`). Unknown keys, cycles, unknown kinds and invalid inputs
    are 422 naming the step (`steps.N...`). Follow every step's events on `workflow:{id}`."""

    return await workflows.create_workflow(
        db, user.id, body, default_timeout=settings.job_default_timeout_seconds
    )


@router.get("", response_model=Page[WorkflowOut], responses=problem_responses(422))
async def list_workflows(
    user: CurrentUser, db: DbSession, paging: CursorPaging
) -> Page[WorkflowOut]:
    """The caller's workflows, newest first."""
    rows, has_more, cursor = await workflows.list_workflows(db, user.id, paging)
    return Page(data=rows, has_more=has_more, next_cursor=cursor)


@router.get("/{workflow_id}", response_model=WorkflowOut, responses=problem_responses(404))
async def get_workflow(workflow_id: WorkflowId, user: CurrentUser, db: DbSession) -> WorkflowOut:
    """The workflow's aggregate status and progress and each step's status, result or error."""
    return await workflows.get_workflow(db, user.id, workflow_id)


@router.post(
    "/{workflow_id}/cancel", response_model=WorkflowOut, responses=problem_responses(404, 409)
)
async def cancel_workflow(workflow_id: WorkflowId, user: CurrentUser, db: DbSession) -> WorkflowOut:
    """Cancel every waiting, queued or running step (running ones stop within a second);
    409 if no step is open any more."""
    return await workflows.cancel_workflow(db, user.id, workflow_id)
