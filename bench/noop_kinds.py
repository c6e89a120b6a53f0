"""The `bench.noop` job kind of `bench/jobs.py`: returns at once and records nothing.

Worker processes load it with `AGENTHUB_JOB_MODULES=noop_kinds` and `PYTHONPATH=bench`; the
benchmark imports it too, so that `enqueue` knows the kind.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from agenthub.jobs.context import JobContext
from agenthub.jobs.registry import job_kind

NOOP = "bench.noop"


class NoopInput(BaseModel):
    model_config = ConfigDict(extra="forbid")


@job_kind(NOOP, input=NoopInput, max_attempts=1)
async def noop(ctx: JobContext, data: NoopInput) -> None:
    """Nothing: what is left is the queue's own cost per job."""
