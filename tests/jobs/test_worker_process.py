"""`agenthub worker` as a process: SIGTERM hands unfinished jobs back to the queue without
counting the interrupted attempt, and `--kinds` limits what a worker claims. Each test runs on
a fresh SQLite and PostgreSQL database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agenthub.jobs.service import NewJob, enqueue
from jobs.effect_kinds import EFFECT
from jobs.worker_support import (
    JobRow,
    assert_completed_exactly_once,
    effects_by_job,
    enqueue_effects,
    job_rows,
    ledger,
    ledger_database,
    settled,
    wait_until,
    worker_env,
    workers,
)

pytestmark = pytest.mark.slow

SLOW_MS = 3000
TIMEOUT = 60.0


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with ledger_database(request.param, tmp_path) as database_url:
        yield database_url


async def test_sigterm_hands_running_jobs_back_without_counting_an_attempt(
    url: str, tmp_path: Path
) -> None:
    env = worker_env(url, AGENTHUB_JOB_GRACE_SECONDS="0.5")
    async with ledger(url) as database:
        ids = await enqueue_effects(database, 3, sleep_ms=SLOW_MS)
        with workers(tmp_path, env) as group:
            first = group.start("--concurrency", "4")
            await wait_until(database, lambda counts: counts == {"running": 3}, TIMEOUT)
            code, seconds = first.terminate()
            assert code == 0, first.output()
            print(f"\nworker exited {seconds:.2f} s after SIGTERM (grace 0.5 s)")

            handed_back = await job_rows(database)
            assert set(handed_back.values()) == {JobRow("queued", 0, None)}
            assert await effects_by_job(database) == {}

            second = group.start("--concurrency", "4")
            await wait_until(database, settled, TIMEOUT)
            assert second.terminate()[0] == 0, second.output()
        assert await assert_completed_exactly_once(database, ids) == 0


async def test_worker_claims_only_the_kinds_it_is_given(url: str, tmp_path: Path) -> None:
    async with ledger(url) as database:
        await enqueue_effects(database, 2)
        async with database.transaction() as db:
            prompt = NewJob(kind="llm.complete", input={"prompt": "hello", "runner": "echo"})
            await enqueue(db, prompt, default_timeout=30)
        with workers(tmp_path, worker_env(url)) as group:
            llm_only = group.start("--kinds", "llm.complete")
            done = await wait_until(database, settled, TIMEOUT, kind="llm.complete")
            assert llm_only.terminate()[0] == 0, llm_only.output()
        assert done == {"completed": 1}
        # Its first claim saw all three jobs and took only the one of its kind.
        left = await job_rows(database, EFFECT)
        assert list(left.values()) == [JobRow("queued", 0, None)] * 2
        assert await effects_by_job(database) == {}
