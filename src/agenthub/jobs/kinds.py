"""`llm.complete` (prompt → text) and the streaming every model-backed kind shares."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agenthub.config import RunnerName
from agenthub.core.jsondata import JsonObject
from agenthub.core.metrics import TOKEN_USAGE
from agenthub.core.text import valid_text
from agenthub.db.models.jobs import Job, Workflow
from agenthub.jobs.context import JobContext
from agenthub.jobs.queue import JOB, WORKFLOW
from agenthub.jobs.registry import job_kind
from agenthub.realtime.channels import channel_family, owner_check
from agenthub.runners.base import ChatMessage, Completion, RunRequest

PROMPT_MAX = 200_000

channel_family(JOB, owner_check(Job.__table__))
channel_family(WORKFLOW, owner_check(Workflow.__table__))


async def stream_completion(
    ctx: JobContext,
    runner: str | None,
    request: RunRequest,
    channel: str,
    context: dict[str, Any],
) -> Completion:
    """Run `request` on `runner` (default: `AGENTHUB_DEFAULT_RUNNER`), publishing each text
    chunk as a `message.delta` event {...context, index, delta} on `channel`. The model's text
    is input like a client's: a lone surrogate in it (a provider's JSON can spell one) comes
    out as U+FFFD, so the reply can be stored."""
    index = 0

    async def on_delta(delta: str) -> None:
        nonlocal index
        await ctx.publish(channel, "message.delta", {**context, "index": index, "delta": delta})
        index += 1

    name = runner or ctx.runners.default
    completion = await ctx.runners.get(name).run(request, on_delta)
    completion = replace(completion, text=valid_text(completion.text))
    model = completion.model or request.model or name
    TOKEN_USAGE.labels(model, "prompt").inc(completion.usage.prompt_tokens)
    TOKEN_USAGE.labels(model, "completion").inc(completion.usage.completion_tokens)
    return completion


def usage_of(completion: Completion) -> dict[str, int]:
    return asdict(completion.usage)


class LlmCompleteInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=PROMPT_MAX)
    system: str | None = Field(default=None, max_length=PROMPT_MAX)
    runner: RunnerName | None = Field(default=None, description="Default: the server's")
    model: str | None = Field(default=None, max_length=200)
    options: JsonObject = Field(default_factory=dict, description="Runner settings")


class LlmCompleteResult(BaseModel):
    text: str
    usage: dict[str, int]
    model: str | None
    tool_calls: list[dict[str, Any]]


@job_kind("llm.complete", input=LlmCompleteInput)
async def llm_complete(ctx: JobContext, data: LlmCompleteInput) -> LlmCompleteResult:
    """Prompt in, text out; the text streams as `message.delta` events on `job:{id}`."""
    messages = [ChatMessage("system", data.system)] if data.system else []
    messages.append(ChatMessage("user", data.prompt))
    request = RunRequest(messages, data.model, data.options, attempt=ctx.attempt)
    job_id = ctx.job.id
    completion = await stream_completion(ctx, data.runner, request, JOB(job_id), {"job_id": job_id})
    return LlmCompleteResult(
        text=completion.text,
        usage=usage_of(completion),
        model=completion.model,
        tool_calls=[asdict(call) for call in completion.tool_calls],
    )
