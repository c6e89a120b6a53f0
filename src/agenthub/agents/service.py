"""Agents: create, list, read, change, delete, bulk actions, config upload, metrics and logs."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.agents.config import parse_config
from agenthub.agents.schemas import (
    AgentMetrics,
    AgentOut,
    BulkItem,
    LogLine,
    TokenUsage,
)
from agenthub.core.channels import USER
from agenthub.core.errors import FieldError, ValidationFailed
from agenthub.core.events import emit
from agenthub.core.ownership import check_owned_reference, get_owned, owned_by
from agenthub.core.pagination import PageParams, contains_text, sorted_keyset_page
from agenthub.core.schemas import apply_changes
from agenthub.db.models.agents import Agent
from agenthub.db.models.jobs import Job
from agenthub.db.models.projects import Project
from agenthub.db.models.sessions import ChatSession
from agenthub.jobs.stats import SAMPLE, percentiles

PREFIX = "agt"
ACTION_STATUS = {"start": "running", "stop": "stopped"}

REPLY_KIND = "agent.reply"
"""The job kind of an agent's runs (its handler is in `sessions.tasks`)."""


def _emit_agent(db: AsyncSession, agent: Agent, event: str) -> None:
    data = AgentOut.model_validate(agent).model_dump(mode="json")
    emit(db, USER(agent.user_id), f"agent.{event}", data)


async def _check_references(
    db: AsyncSession, user_id: str, changes: Mapping[str, Any], mcp_servers: Collection[str]
) -> None:
    """`project_id` must be one of the user's projects, and each MCP tool's server one of
    `mcp_servers` (the configured ones)."""
    project_id = changes.get("project_id")
    await check_owned_reference(db, Project, project_id, user_id, field="project_id")
    for index, tool in enumerate(changes.get("tools") or ()):
        if tool["type"] == "mcp" and tool["server"] not in mcp_servers:
            known = ", ".join(sorted(mcp_servers)) or "none is configured"
            raise ValidationFailed(
                f"Unknown MCP server {tool['server']!r}.",
                errors=[FieldError(field=f"tools.{index}.server", message=f"one of: {known}")],
            )


async def create_agent(
    db: AsyncSession, user_id: str, fields: Mapping[str, Any], *, mcp_servers: Collection[str]
) -> Agent:
    """A new agent from the columns `AgentCreate` holds; `project_id` must be the user's and
    each MCP tool's server a configured one."""
    await _check_references(db, user_id, fields, mcp_servers)
    agent = Agent(user_id=user_id, **fields)
    db.add(agent)
    await db.flush()
    _emit_agent(db, agent, "created")
    return agent


async def list_agents(
    db: AsyncSession,
    user_id: str,
    params: PageParams,
    *,
    sort: str,
    filters: Mapping[str, str | None],
    q: str | None = None,
) -> tuple[Sequence[Agent], bool, str | None]:
    """One page of the user's agents; `filters` are exact column matches (None: any),
    `q` matches name or system prompt, any case."""
    stmt = owned_by(Agent, user_id)
    for column, value in filters.items():
        if value is not None:
            stmt = stmt.where(getattr(Agent, column) == value)
    if q:
        stmt = stmt.where(contains_text(q, Agent.name, Agent.system_prompt))
    return await sorted_keyset_page(db, stmt, Agent, params, PREFIX, sort)


async def get_agent(db: AsyncSession, user_id: str, agent_id: str) -> Agent:
    return await get_owned(db, Agent, agent_id, user_id, what="Agent")


async def update_agent(
    db: AsyncSession,
    user_id: str,
    agent_id: str,
    changes: Mapping[str, Any],
    *,
    mcp_servers: Collection[str],
) -> Agent:
    """Apply the fields a PATCH sent (`options` and `tools` replace what was there)."""
    agent = await get_agent(db, user_id, agent_id)
    await _check_references(db, user_id, changes, mcp_servers)
    if apply_changes(agent, changes):
        await db.flush()
        _emit_agent(db, agent, "updated")
    return agent


async def delete_agent(db: AsyncSession, user_id: str, agent_id: str) -> None:
    """Delete the agent; its sessions stay, with `agent_id` null."""
    agent = await get_agent(db, user_id, agent_id)
    await db.delete(agent)
    await db.flush()
    emit(db, USER(user_id), "agent.deleted", {"id": agent_id})


async def bulk(
    db: AsyncSession,
    user_id: str,
    action: str,
    ids: Sequence[str],
    patch: Mapping[str, Any] | None = None,
    *,
    mcp_servers: Collection[str],
) -> list[BulkItem]:
    """Apply `action` to each id on its own: an id that is not the user's fails with 404
    while the others succeed. `patch` is the PATCH body for `update`, and only for it."""
    if action == "update":
        if patch is None:
            raise ValidationFailed(
                "The update action needs a patch.",
                errors=[FieldError(field="patch", message="required for update")],
            )
        await _check_references(db, user_id, patch, mcp_servers)
    elif patch is not None:
        raise ValidationFailed(
            f"The {action} action takes no patch.",
            errors=[FieldError(field="patch", message="only allowed for update")],
        )
    status = ACTION_STATUS.get(action)
    changes: Mapping[str, Any] = patch or ({"status": status} if status else {})
    found = {
        agent.id: agent
        for agent in await db.scalars(owned_by(Agent, user_id).where(Agent.id.in_(ids)))
    }
    changed: list[Agent] = []
    for agent in found.values():
        if action == "delete":
            await db.delete(agent)
        elif apply_changes(agent, changes):
            changed.append(agent)
    await db.flush()
    for agent in changed:
        _emit_agent(db, agent, "updated")
    results = []
    for agent_id in ids:
        target = found.get(agent_id)
        if target is None:
            results.append(BulkItem(id=agent_id, ok=False, status=404, error="Agent not found."))
        elif action == "delete":
            emit(db, USER(user_id), "agent.deleted", {"id": agent_id})
            results.append(BulkItem(id=agent_id, ok=True, status=204))
        else:
            out = AgentOut.model_validate(target)
            results.append(BulkItem(id=agent_id, ok=True, status=200, agent=out))
    return results


async def replace_config(
    db: AsyncSession,
    user_id: str,
    agent_id: str,
    data: bytes,
    *,
    filename: str | None,
    content_type: str | None,
    mcp_servers: Collection[str],
) -> Agent:
    """Replace the agent's runner settings by those of an uploaded JSON or YAML file; keys
    the file leaves out take their defaults (no model, no system prompt, no options, no
    tools)."""
    agent = await get_agent(db, user_id, agent_id)
    config = parse_config(data, filename, content_type).model_dump()
    await _check_references(db, user_id, config, mcp_servers)
    if apply_changes(agent, config):
        await db.flush()
        _emit_agent(db, agent, "updated")
    return agent


async def agent_metrics(db: AsyncSession, user_id: str, agent_id: str) -> AgentMetrics:
    """Runs (finished `agent.reply` jobs), failures and the run time percentiles of the
    completed ones (the most recent `SAMPLE`) come from the agent's jobs; tokens are the totals
    of its sessions."""
    agent = await get_agent(db, user_id, agent_id)
    prompt, completion = (
        await db.execute(
            select(
                func.coalesce(func.sum(ChatSession.prompt_tokens), 0),
                func.coalesce(func.sum(ChatSession.completion_tokens), 0),
            ).where(ChatSession.user_id == user_id, ChatSession.agent_id == agent.id)
        )
    ).one()
    runs = _runs(user_id, agent.id)
    counts = dict(
        (
            await db.execute(
                select(Job.status, func.count())
                .where(runs, Job.status.in_(("completed", "failed")))
                .group_by(Job.status)
            )
        ).all()
    )
    durations = (
        await db.scalars(
            select(Job.duration_ms)
            .where(runs, Job.status == "completed", Job.duration_ms.is_not(None))
            .order_by(Job.finished_at.desc())
            .limit(SAMPLE)
        )
    ).all()
    return AgentMetrics(
        runs=sum(counts.values()),
        failures=counts.get("failed", 0),
        tokens=TokenUsage(prompt=prompt, completion=completion, total=prompt + completion),
        latency_ms=percentiles([float(d) for d in durations if d is not None]),
    )


async def agent_logs(db: AsyncSession, user_id: str, agent_id: str, limit: int) -> list[LogLine]:
    """A line for each of the agent's `limit` most recent runs (`agent.reply` jobs) telling
    its latest state, oldest first."""
    agent = await get_agent(db, user_id, agent_id)
    jobs = await db.scalars(
        select(Job).where(_runs(user_id, agent.id)).order_by(Job.id.desc()).limit(limit)
    )
    return sorted((_log_line(job) for job in jobs), key=lambda line: line.ts)


def _runs(user_id: str, agent_id: str) -> ColumnElement[bool]:
    return and_(Job.user_id == user_id, Job.agent_id == agent_id, Job.kind == REPLY_KIND)


def _log_line(job: Job) -> LogLine:
    what = f"reply to {job.input.get('message_id', '?')}"
    error = (job.error or {}).get("message", "")
    at = job.finished_at or job.started_at or job.created_at
    if job.status == "completed":
        usage = (job.result or {}).get("usage", {})
        tokens = f"{usage.get('prompt_tokens', 0)}+{usage.get('completion_tokens', 0)} tokens"
        tries = f" on attempt {job.attempts}" if job.attempts > 1 else ""
        message = f"{what} completed in {job.duration_ms} ms{tries}, {tokens}"
        return LogLine(ts=at, level="info", message=message)
    if job.status == "failed":
        return LogLine(
            ts=at, level="error", message=f"{what} failed after {job.attempts} attempt(s): {error}"
        )
    if job.status == "canceled":
        return LogLine(ts=at, level="warning", message=f"{what} canceled")
    if job.status == "running":
        return LogLine(ts=at, level="info", message=f"{what} running (attempt {job.attempts})")
    if error:
        return LogLine(
            ts=at, level="warning", message=f"{what} retrying attempt {job.attempts + 1}: {error}"
        )
    return LogLine(ts=at, level="info", message=f"{what} {job.status}")
