"""Workflows: steps with dependencies created atomically, results passed to dependents.

A workflow is a set of jobs sharing a `workflow_id`, each with a `step_key`; dependencies are
ordinary job dependencies, so the queue releases a step once its dependencies completed and
cancels it (`dependency_failed`) when one of them failed. A step's input may hold references
`${steps.<key>.result[.<path>]}` to a direct dependency's result; they are filled in by
`resolve_input` when the step runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.core.errors import Conflict, FieldError, NotFound, ValidationFailed
from agenthub.core.pagination import PageParams, keyset_page
from agenthub.db.engine import Database
from agenthub.db.models.jobs import OPEN_STATUSES, Job, Workflow
from agenthub.jobs import service
from agenthub.jobs.context import JobFailed
from agenthub.jobs.registry import Kind, get_kind, parse_input
from agenthub.jobs.schemas import JobError, JobStatus
from agenthub.jobs.workflow_schemas import (
    StepCreate,
    StepOut,
    WorkflowCreate,
    WorkflowOut,
    WorkflowProgress,
    WorkflowStatus,
)

PREFIX = "wfl"
REFERENCE = re.compile(r"\$\{steps\.([A-Za-z0-9_\-]{1,64})\.result((?:\.[^.{}]+)*)\}")
"""`${steps.<key>.result}` or `${steps.<key>.result.<path>}`; the path's parts are object keys
or list indexes."""


# -- references ------------------------------------------------------------------------------


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string in `value` with its dotted field path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _strings(child, f"{path}.{key}")
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _strings(child, f"{path}.{index}")


def references(data: Mapping[str, Any], path: str = "input") -> Iterator[tuple[str, str]]:
    """(field path, referenced step key) of every reference in a step's input."""
    for field, text in _strings(dict(data), path):
        for match in REFERENCE.finditer(text):
            yield field, match.group(1)


def has_references(data: Mapping[str, Any]) -> bool:
    return next(references(data), None) is not None


def _lookup(results: Mapping[str, Any], match: re.Match[str]) -> Any:
    key, path = match.group(1), match.group(2)
    if key not in results:
        raise JobFailed(f"{match.group(0)}: step {key!r} has no result.", type="invalid_input")
    value = results[key]
    for part in path.split(".")[1:]:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise JobFailed(
                f"{match.group(0)}: the result of step {key!r} has nothing at {part!r}.",
                type="invalid_input",
            )
    return value


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def substitute(value: Any, results: Mapping[str, Any]) -> Any:
    """`value` with each reference replaced: a string that is one reference becomes the
    referenced value, any other reference is interpolated as text (JSON for non-strings)."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value)
        if whole:
            return _lookup(results, whole)
        return REFERENCE.sub(lambda m: _as_text(_lookup(results, m)), value)
    if isinstance(value, dict):
        return {key: substitute(child, results) for key, child in value.items()}
    if isinstance(value, list):
        return [substitute(child, results) for child in value]
    return value


async def resolve_input(database: Database, job: Job) -> dict[str, Any]:
    """The job's input with references to its dependencies' results filled in; a reference
    that does not resolve fails the job (`invalid_input`)."""
    if job.workflow_id is None or not has_references(job.input):
        return job.input
    async with database.sessions() as db:
        rows = (
            await db.execute(select(Job.step_key, Job.result).where(Job.id.in_(job.depends_on)))
        ).all()
    resolved: dict[str, Any] = substitute(job.input, {key: result for key, result in rows})
    return resolved


# -- creation --------------------------------------------------------------------------------


@dataclass
class _Step:
    spec: StepCreate
    kind: Kind
    input: dict[str, Any]
    """Validated and normalized by the kind, or as sent when it holds references."""


def _check_graph(steps: Sequence[StepCreate]) -> list[FieldError]:
    """Unique keys, dependencies naming steps of the workflow, references only to direct
    dependencies."""
    errors: list[FieldError] = []
    first: dict[str, int] = {}
    for index, step in enumerate(steps):
        if step.key in first:
            message = f"duplicate key; steps.{first[step.key]} has it too"
            errors.append(FieldError(field=f"steps.{index}.key", message=message))
        first.setdefault(step.key, index)
    for index, step in enumerate(steps):
        for position, key in enumerate(step.depends_on):
            if key not in first:
                field = f"steps.{index}.depends_on.{position}"
                errors.append(FieldError(field=field, message=f"no step has key {key!r}"))
        for field, key in references(step.input, f"steps.{index}.input"):
            if key not in step.depends_on:
                message = f"refers to step {key!r}, which is not in this step's depends_on"
                errors.append(FieldError(field=field, message=message))
    return errors


def _order(steps: Sequence[StepCreate]) -> list[int]:
    """Step indexes in an order where each step follows its dependencies; 422 naming a cycle."""
    done: set[str] = set()
    order: list[int] = []
    pending = list(range(len(steps)))
    while pending:
        ready = [i for i in pending if done.issuperset(steps[i].depends_on)]
        if not ready:
            raise _cycle(steps, pending)
        done.update(steps[i].key for i in ready)
        order.extend(ready)
        pending = [i for i in pending if i not in ready]
    return order


def _cycle(steps: Sequence[StepCreate], pending: list[int]) -> ValidationFailed:
    """Every pending step waits on another pending one: follow those edges until one repeats."""
    index_of = {steps[i].key: i for i in pending}
    path = [pending[0]]
    while True:
        nxt = next(index_of[k] for k in steps[path[-1]].depends_on if k in index_of)
        if nxt in path:
            loop = [*path[path.index(nxt) :], nxt]
            break
        path.append(nxt)
    names = " → ".join(steps[i].key for i in loop)
    return ValidationFailed(
        f"The steps' dependencies form a cycle: {names}.",
        errors=[FieldError(field=f"steps.{loop[0]}.depends_on", message=f"cycle: {names}")],
    )


def _prefixed(exc: ValidationFailed, prefix: str) -> list[FieldError]:
    return [
        FieldError(field=f"{prefix}.{error.field}", message=error.message)
        for error in exc.errors or []
    ]


def _parse(step: StepCreate) -> _Step:
    """The step's kind and input (validated now unless it refers to results); 422 otherwise."""
    kind = get_kind(step.kind)
    data = step.input
    if not has_references(data):
        data = parse_input(kind, data).model_dump(mode="json", exclude_unset=True)
    return _Step(step, kind, data)


def _plan(steps: Sequence[StepCreate]) -> list[_Step]:
    """The steps validated, in dependency order; one 422 listing every problem found."""
    errors = _check_graph(steps)
    parsed: list[_Step] = []
    for index, step in enumerate(steps):
        try:
            parsed.append(_parse(step))
        except ValidationFailed as exc:
            errors.extend(_prefixed(exc, f"steps.{index}"))
    if errors:
        raise ValidationFailed("The workflow's steps are invalid.", errors=errors)
    return [parsed[i] for i in _order(steps)]


async def create_workflow(
    db: AsyncSession, user_id: str, body: WorkflowCreate, *, default_timeout: float
) -> WorkflowOut:
    """The workflow and one job per step, in `db`'s transaction: steps without dependencies
    are queued, the others wait."""
    plan = _plan(body.steps)
    workflow = Workflow(user_id=user_id, name=body.name, canceled=False)
    db.add(workflow)
    await db.flush()
    job_ids: dict[str, str] = {}
    jobs: list[Job] = []
    for step in plan:
        spec = step.spec
        job = await service.enqueue(
            db,
            service.NewJob(
                kind=spec.kind,
                input=step.input,
                user_id=user_id,
                priority=spec.priority,
                depends_on=[job_ids[key] for key in spec.depends_on],
                max_attempts=spec.max_attempts,
                timeout_s=spec.timeout_s,
                workflow_id=workflow.id,
                step_key=spec.key,
                validate=False,
            ),
            default_timeout=default_timeout,
            kind=step.kind,
        )
        job_ids[spec.key] = job.id
        jobs.append(job)
    return workflow_view(workflow, jobs)


# -- reading and canceling -------------------------------------------------------------------


def _status(canceled: bool, statuses: Sequence[str]) -> WorkflowStatus:
    if canceled:
        return "canceled"
    for final in ("failed", "canceled"):
        if final in statuses:
            return final
    if statuses and all(s == "completed" for s in statuses):
        return "completed"
    if any(s in ("running", "completed") for s in statuses):
        return "running"
    return "queued"


def workflow_view(workflow: Workflow, jobs: Sequence[Job]) -> WorkflowOut:
    """The workflow with its steps (in dependency order), aggregate status and progress."""
    keys = {job.id: job.step_key or job.id for job in jobs}
    statuses = [job.status for job in jobs]
    completed = statuses.count("completed")
    still_open = any(s in OPEN_STATUSES for s in statuses)
    finished = [job.finished_at for job in jobs if job.finished_at is not None]
    return WorkflowOut(
        id=workflow.id,
        name=workflow.name,
        status=_status(workflow.canceled, statuses),
        progress=WorkflowProgress(
            completed=completed,
            total=len(jobs),
            percent=round(100 * completed / len(jobs), 1) if jobs else 0.0,
        ),
        steps=[
            StepOut(
                key=keys[job.id],
                job_id=job.id,
                status=cast(JobStatus, job.status),
                kind=job.kind,
                depends_on=[keys[d] for d in job.depends_on if d in keys],
                result=job.result,
                error=JobError.model_validate(job.error) if job.error else None,
            )
            for job in jobs
        ],
        created_at=workflow.created_at,
        finished_at=None if still_open or not finished else max(finished),
    )


async def _steps(db: AsyncSession, workflow_ids: Sequence[str], *, lock: bool = False) -> list[Job]:
    stmt = select(Job).where(Job.workflow_id.in_(workflow_ids)).order_by(Job.id)
    if lock:
        stmt = stmt.with_for_update()
    return list((await db.scalars(stmt)).all())


async def get_workflow(db: AsyncSession, user_id: str, workflow_id: str) -> WorkflowOut:
    workflow = await db.scalar(
        select(Workflow).where(Workflow.id == workflow_id, Workflow.user_id == user_id)
    )
    if workflow is None:
        raise NotFound(f"Workflow {workflow_id!r} not found.")
    return workflow_view(workflow, await _steps(db, [workflow.id]))


async def list_workflows(
    db: AsyncSession, user_id: str, params: PageParams
) -> tuple[list[WorkflowOut], bool, str | None]:
    """One page of the user's workflows, each with its steps."""
    stmt = select(Workflow).where(Workflow.user_id == user_id)
    rows, has_more, cursor = await keyset_page(db, stmt, Workflow.id, params, PREFIX)
    steps: dict[str | None, list[Job]] = {}
    for job in await _steps(db, [w.id for w in rows]):
        steps.setdefault(job.workflow_id, []).append(job)
    return [workflow_view(w, steps.get(w.id, [])) for w in rows], has_more, cursor


async def cancel_workflow(db: AsyncSession, user_id: str, workflow_id: str) -> WorkflowOut:
    """Cancel every open step (running ones are interrupted within a second) and mark the
    workflow canceled; 409 once no step is open."""
    # Written first, so that the row lock (SQLite's write lock) is held before steps are read.
    workflow = await db.scalar(
        update(Workflow)
        .where(Workflow.id == workflow_id, Workflow.user_id == user_id)
        .values(canceled=True)
        .returning(Workflow)
        .execution_options(synchronize_session=False, populate_existing=True)
    )
    if workflow is None:
        raise NotFound(f"Workflow {workflow_id!r} not found.")
    jobs = await _steps(db, [workflow.id], lock=True)
    still_open = [job for job in jobs if job.status in OPEN_STATUSES]
    if not still_open:
        raise Conflict(f"Workflow {workflow_id!r} has already finished.")
    # Dependents first: each step is canceled by request rather than as a failed dependency.
    for job in reversed(still_open):
        if job.status in OPEN_STATUSES:
            await service.cancel(db, job)
    return workflow_view(workflow, jobs)
