"""Job kinds of the worker-process tests, loaded by `agenthub worker` through
`AGENTHUB_JOB_MODULES=jobs.effect_kinds` (with `tests` on `PYTHONPATH`).

`test.effect` records one row in the test's own `job_effects` ledger through
`ctx.on_complete`, so the row commits with the job's completion: a job run twice (a worker
killed mid-job, a lease lost) would show as two rows, since the ledger has no unique key.
"""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.jobs.context import JobContext
from agenthub.jobs.registry import job_kind

EFFECT = "test.effect"
MODULE = "jobs.effect_kinds"
CREATE_LEDGER = (
    "CREATE TABLE job_effects ("
    "job_id VARCHAR(40) NOT NULL, attempt INTEGER NOT NULL, worker_id VARCHAR(80) NOT NULL)"
)
RECORD = text("INSERT INTO job_effects (job_id, attempt, worker_id) VALUES (:job, :attempt, :w)")


class EffectInput(BaseModel):
    sleep_ms: int = Field(default=0, ge=0)


@job_kind(EFFECT, input=EffectInput, max_attempts=25)
async def effect(ctx: JobContext, data: EffectInput) -> dict[str, int]:
    """Sleep `sleep_ms`, then record (job, attempt, worker) once the completion commits."""
    if data.sleep_ms:
        await asyncio.sleep(data.sleep_ms / 1000)

    async def record(db: AsyncSession) -> None:
        await db.execute(RECORD, {"job": ctx.job.id, "attempt": ctx.attempt, "w": ctx.worker_id})

    ctx.on_complete(record)
    return {"attempt": ctx.attempt}
