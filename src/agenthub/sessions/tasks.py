"""The sessions' background work: `agent.reply`, and the purge of sessions in the trash.

`agent.reply`: a session's agent answers one of its messages, streaming as it writes.

`POST /v1/sessions/{id}/messages` with `"respond": true` enqueues it in the transaction that
stores the user's message; `POST /v1/jobs` may create it directly. A run reads:

- the session's agent: runner, model, system prompt and options; the job's `runner` and
  `model` replace the agent's and its `options` override the agent's key by key. A session
  without an agent (created by `agent_type`) uses the server's default runner and no system
  prompt.
- the last `HISTORY` messages up to and including the one answered, oldest first, after the
  system prompt. User, assistant and system messages keep their role, an assistant message
  its `tool_calls`; a tool message with a `tool_call_id` is the result of that call, one
  without reaches the model as user text prefixed `Tool result:`; empty messages are left
  out.

The text streams as `message.delta` {job_id, reply_to, attempt, index, delta} on
`session:{id}`. The reply is written in the transaction that completes the job, so it is
stored exactly once however many attempts ran: an assistant message (token counts, metadata
{job_id, reply_to, runner, model}) through `append_message` (session counters,
`message.created`), each tool call the model made as a succeeded tool execution of that
message, and the tokens added to the user's totals.

Ownership is checked by the run, not at enqueue (a kind's input model checks only the
shape): a session that is not the job owner's, or is missing, or a message not in it, fails
the job at once with `not_found` and touches nothing; a deleted session fails with
`conflict`, also when it is deleted while the reply streams.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.agents.service import REPLY_KIND
from agenthub.auth.service import add_usage
from agenthub.cache.stale import invalidate_cache_of
from agenthub.config import RunnerName
from agenthub.core.ids import new_id
from agenthub.core.jsondata import JsonObject
from agenthub.core.ownership import owned_by
from agenthub.db.models.agents import Agent
from agenthub.db.models.jobs import Job
from agenthub.db.models.sessions import ChatSession, Message
from agenthub.jobs.context import JobContext, JobFailed, Write
from agenthub.jobs.kinds import stream_completion, usage_of
from agenthub.jobs.maintenance import BATCH, in_batches, purge
from agenthub.jobs.registry import job_kind
from agenthub.realtime.channels import channel_family, owner_check
from agenthub.runners.base import ChatMessage, ChatRole, Completion, RunRequest, ToolCall
from agenthub.sessions.messages import append_message, last_messages
from agenthub.sessions.schemas import TOOL_NAME_MAX, TOOL_TYPE_PATTERN
from agenthub.sessions.service import SESSION, purge_deleted_sessions
from agenthub.sessions.tools import create_tool, progress_tool

KIND = REPLY_KIND
HISTORY = 50
"""How many messages, up to the one answered, the model sees."""
TOOL_PREFIX = "Tool result:\n"
_ROLES: dict[str, ChatRole] = {
    "user": "user",
    "assistant": "assistant",
    "system": "system",
    "tool": "user",
}
_TOOL_TYPE = re.compile(TOOL_TYPE_PATTERN)


class AgentReplyInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: str = Field(max_length=64, description="One of your sessions")
    message_id: str = Field(max_length=64, description="The message of that session to answer")
    runner: RunnerName | None = Field(default=None, description="Default: the agent's")
    model: str | None = Field(default=None, max_length=200, description="Default: the agent's")
    options: JsonObject = Field(
        default_factory=dict, description="Runner settings over the agent's, key by key"
    )


class AgentReplyResult(BaseModel):
    message_id: str = Field(description="The stored assistant message")
    usage: dict[str, int]
    tool_calls: int


@job_kind(KIND, input=AgentReplyInput)
async def agent_reply(ctx: JobContext, data: AgentReplyInput) -> AgentReplyResult:
    """Answer `message_id` as the session's agent; see the module docstring."""
    async with ctx.database.transaction() as db:
        chat = await _writable_session(db, ctx.job.user_id, data.session_id)
        agent = await db.get(Agent, chat.agent_id) if chat.agent_id else None
        history = await last_messages(db, chat, HISTORY, until=data.message_id)
        if not history or history[-1].id != data.message_id:
            raise JobFailed(f"Message {data.message_id!r} not found.", type="not_found")
        await _attribute(db, ctx.job, chat)
    runner = data.runner or (agent.runner if agent else None) or ctx.runners.default
    request = RunRequest(
        _chat_messages(agent.system_prompt if agent else None, history),
        data.model or (agent.model if agent else None),
        {**(agent.options if agent else {}), **data.options},
        attempt=ctx.attempt,
    )
    context = {"job_id": ctx.job.id, "reply_to": data.message_id, "attempt": ctx.attempt}
    completion = await stream_completion(ctx, runner, request, SESSION(chat.id), context)
    message_id = new_id("msg")
    ctx.on_complete(_store(ctx, data, runner, completion, message_id))
    return AgentReplyResult(
        message_id=message_id,
        usage=usage_of(completion),
        tool_calls=len(completion.tool_calls),
    )


async def _writable_session(db: AsyncSession, user_id: str | None, session_id: str) -> ChatSession:
    chat = (
        None
        if user_id is None
        else await db.scalar(owned_by(ChatSession, user_id).where(ChatSession.id == session_id))
    )
    if chat is None:
        raise JobFailed(f"Session {session_id!r} not found.", type="not_found")
    if chat.deleted_at is not None:
        raise JobFailed(f"Session {session_id!r} is deleted.", type="conflict")
    return chat


async def _attribute(db: AsyncSession, job: Job, chat: ChatSession) -> None:
    """Link a job created through `POST /v1/jobs` to its session and agent (the agent's
    metrics and logs count it)."""
    if (job.session_id, job.agent_id) != (chat.id, chat.agent_id):
        await db.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(session_id=chat.id, agent_id=chat.agent_id)
            .execution_options(synchronize_session=False)
        )
        invalidate_cache_of(db, job.user_id)


def _chat_messages(system_prompt: str | None, history: list[Message]) -> list[ChatMessage]:
    """The history as the model reads it: an assistant turn with the calls it made, a tool
    result with the id of the call it answers. A tool result without one reaches the model
    as user text (it has no call to be paired with)."""
    messages = [ChatMessage("system", system_prompt)] if system_prompt else []
    for message in history:
        calls = tuple(
            ToolCall(call["name"], call.get("arguments"), call["id"])
            for call in message.tool_calls or ()
        )
        if message.role == "tool" and message.tool_call_id is not None:
            messages.append(ChatMessage("tool", message.content, tool_call_id=message.tool_call_id))
        elif message.content or calls:
            prefix = TOOL_PREFIX if message.role == "tool" else ""
            role = _ROLES[message.role]
            messages.append(ChatMessage(role, prefix + message.content, tool_calls=calls))
    return messages


def _store(
    ctx: JobContext, data: AgentReplyInput, runner: str, completion: Completion, message_id: str
) -> Write:
    """The completion's write: the reply, its tool calls and the user's token totals."""
    user_id = ctx.job.user_id
    limit = ctx.settings.max_sessions_per_agent_type
    usage = completion.usage

    async def write(db: AsyncSession) -> None:
        chat = await _writable_session(db, user_id, data.session_id)
        # The user's row before the session's: the order a reactivating message takes.
        await add_usage(db, chat.user_id, usage.prompt_tokens, usage.completion_tokens)
        message = await append_message(
            db,
            chat,
            role="assistant",
            content=completion.text,
            limit=limit,
            metadata={
                "job_id": ctx.job.id,
                "reply_to": data.message_id,
                "runner": runner,
                "model": completion.model,
            },
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            message_id=message_id,
        )
        for call in completion.tool_calls:
            tool = await create_tool(
                db,
                chat,
                status="running",
                message_id=message.id,
                **_tool_fields(call),
            )
            progress_tool(db, chat, tool, {"status": "succeeded"})
        await db.flush()

    return write


def _tool_fields(call: ToolCall) -> dict[str, Any]:
    """A model's tool call as a tool execution: arguments that are not an object (a string
    that did not parse as JSON) are kept as `{"arguments": ...}`; an unusable type is
    `function`."""
    arguments = call.arguments
    return {
        "tool_name": call.name[:TOOL_NAME_MAX],
        "tool_type": call.tool_type if _TOOL_TYPE.fullmatch(call.tool_type) else "function",
        "tool_input": arguments if isinstance(arguments, dict) else {"arguments": arguments},
    }


channel_family(SESSION, owner_check(ChatSession.__table__))


@purge("sessions", order=10)
async def purge_trash(ctx: JobContext, now: datetime) -> int:
    """Sessions in the trash past `AGENTHUB_DELETED_RETENTION_DAYS` (messages go with them)."""
    cutoff = now - timedelta(days=ctx.settings.deleted_retention_days)
    return await in_batches(ctx.database, lambda db: purge_deleted_sessions(db, cutoff, BATCH))
