"""Crash safety with real processes: `agenthub worker` processes work through a thousand-odd
jobs while the test kills them with SIGKILL, mid-job, and starts replacements. At the end every
job completed, none is left running, and each job's side effect (a ledger row committed with
its completion) exists exactly once, written by the attempt that completed it.

PostgreSQL: three worker processes sharing Redis. SQLite: one worker process at a time."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from agenthub.db.engine import Database
from jobs.worker_support import (
    assert_completed_exactly_once,
    enqueue_effects,
    ledger,
    ledger_database,
    redis_prefix,
    settled,
    statuses,
    worker_env,
    workers,
)

pytestmark = pytest.mark.slow

SLEEP_MS = 2
KILLS = 5
"""Each kill costs a process start (about 2 s of CPU): more would mostly measure start-ups."""
TIMEOUT = 300.0


@dataclass(frozen=True)
class Plan:
    backend: str
    jobs: int
    processes: int
    concurrency: int


PLANS = [Plan("postgres", 1500, 3, 6), Plan("sqlite", 600, 1, 8)]
"""SQLite has one worker (one writer)."""


@pytest.fixture(params=PLANS, ids=lambda p: p.backend)
def plan(request: pytest.FixtureRequest) -> Plan:
    chosen: Plan = request.param
    return chosen


@pytest.fixture
def env(plan: Plan, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The worker environment on a fresh database (PostgreSQL workers also share Redis)."""
    with ledger_database(plan.backend, tmp_path) as url:
        if plan.backend == "sqlite":
            yield worker_env(url)
            return
        with redis_prefix() as redis:
            yield worker_env(url, **redis)


async def busy_pids(database: Database) -> dict[int, int]:
    """Process id -> how many jobs it is running (a worker id is `host:pid:suffix`)."""
    async with database.transaction() as db:
        rows = await db.execute(
            text("SELECT worker_id, count(*) FROM jobs WHERE status = 'running' GROUP BY worker_id")
        )
        return {int(worker.rsplit(":", 2)[1]): int(n) for worker, n in rows.all()}


async def test_killed_workers_complete_every_job_exactly_once(
    plan: Plan, env: dict[str, str], tmp_path: Path
) -> None:
    seed = random.randrange(2**32)
    chaos = random.Random(seed)
    args = ("--concurrency", str(plan.concurrency))
    async with ledger(env["AGENTHUB_DATABASE_URL"]) as database:
        ids = await enqueue_effects(database, plan.jobs, sleep_ms=SLEEP_MS)
        with workers(tmp_path, env) as group:
            began = time.monotonic()
            live = [group.start(*args) for _ in range(plan.processes)]
            kills = interrupted = 0
            # a kill a random way into each tenth of the first half of the jobs (the second
            # half leaves time for the last): as many kills whatever the machine's speed
            marks = [(k + chaos.random()) * plan.jobs / (2 * KILLS) for k in range(KILLS)]
            while not settled(counts := await statuses(database)):
                assert time.monotonic() - began < TIMEOUT, f"jobs left open: {counts}"
                await asyncio.sleep(0.1)
                if kills == KILLS or counts.get("completed", 0) < marks[kills]:
                    continue
                busy = await busy_pids(database)
                victims = [w for w in live if w.proc.pid in busy]
                if victims:
                    victim = chaos.choice(victims)
                    victim.kill()
                    kills += 1
                    interrupted += busy[victim.proc.pid]
                    live[live.index(victim)] = group.start(*args)
            duration = time.monotonic() - began
            for worker in live:
                code, _ = worker.terminate()
                assert code == 0, worker.output()
        assert counts == {"completed": plan.jobs}
        reruns = await assert_completed_exactly_once(database, ids)
    print(
        f"\n{plan.backend}: {plan.jobs} jobs, {plan.processes} workers x {plan.concurrency}, "
        f"{kills} SIGKILLs interrupting {interrupted} running jobs, {reruns} attempts re-run, "
        f"{duration:.1f} s ({plan.jobs / duration:.0f} jobs/s), seed {seed}"
    )
    assert kills == KILLS, "the run ended before the workers were killed often enough"
