"""`spec.generate`: ask the configured runner for an idea's specification and store it."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.db.base import utcnow
from agenthub.db.models.ideas import Idea
from agenthub.ideas import spec
from agenthub.ideas.schemas import Spec, SpecGenerateInput, SpecGenerateResult
from agenthub.jobs.context import JobContext, JobFailed, Write
from agenthub.jobs.kinds import stream_completion, usage_of
from agenthub.jobs.queue import JOB
from agenthub.jobs.registry import job_kind
from agenthub.runners.base import RunnerError, RunRequest

KIND = "spec.generate"
# A CLI model can take minutes on a long idea.
TIMEOUT_S = 600.0


@job_kind(KIND, input=SpecGenerateInput, timeout_s=TIMEOUT_S)
async def generate_spec(ctx: JobContext, data: SpecGenerateInput) -> SpecGenerateResult:
    """Stream the model's answer as `message.delta` {job_id, idea_id, index, delta} on
    `job:{id}`, read it into a specification, and store that on the idea when the job
    completes. Progress: 10 % while the model writes, 90 % once the answer is read."""
    idea = await _idea_text(ctx, data.idea_id)
    await ctx.progress(10, "asking the model")
    request = RunRequest(
        spec.prompt(idea, data.sections, data.language),
        data.model,
        data.runner_options,
        attempt=ctx.attempt,
    )
    job_id = ctx.job.id
    completion = await stream_completion(
        ctx, data.runner, request, JOB(job_id), {"job_id": job_id, "idea_id": data.idea_id}
    )
    if not completion.text.strip():
        raise RunnerError("The model returned no text.", transient=True)
    result = spec.parse(completion.text, idea, completion.model)
    await ctx.progress(90, "storing the specification")
    ctx.on_complete(_store(data.idea_id, job_id, result))
    return SpecGenerateResult(
        idea_id=data.idea_id,
        title=result.title,
        sections=len(result.sections),
        usage=usage_of(completion),
    )


async def _idea_text(ctx: JobContext, idea_id: str) -> str:
    """The idea's text; a permanent failure unless it exists and belongs to the job's owner."""
    async with ctx.database.transaction() as db:
        idea = await db.get(Idea, idea_id)
        if idea is None or idea.user_id != ctx.job.user_id:
            raise JobFailed(f"Idea {idea_id!r} not found.", type="not_found")
        return idea.idea


def _store(idea_id: str, job_id: str, result: Spec) -> Write:
    """The write that records the specification (and the job that made it) on the idea."""

    async def write(db: AsyncSession) -> None:
        await db.execute(
            update(Idea)
            .where(Idea.id == idea_id)
            .values(
                spec=result.model_dump(mode="json"),
                title=result.title,
                completed_at=utcnow(),
                job_id=job_id,
            )
        )

    return write
