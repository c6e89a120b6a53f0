"""`agenthub worker` processes on a private database holding the `job_effects` ledger, and the
queries the worker-process tests make of it (import as `from jobs.worker_support import ...`)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import text

from agenthub.core.logging import configure_logging
from agenthub.db import migrate
from agenthub.db.engine import Database
from agenthub.jobs.registry import KINDS
from agenthub.jobs.service import NewJob, enqueue
from conftest import TEST_SECRET, fresh_postgres, make_settings
from jobs.effect_kinds import CREATE_LEDGER, EFFECT, MODULE
from processes import AGENTHUB, clean_env
from realtime_support import drop_prefix, redis_url, require_redis

TESTS_DIR = Path(__file__).resolve().parent.parent
ENQUEUE_BATCH = 1000


@contextmanager
def ledger_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """The URL of a new database on `backend`, migrated, with an empty `job_effects` ledger."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'worker.db'}"
        _prepare(url)
        yield url
        return
    with fresh_postgres("agenthub_workers") as url:
        _prepare(url)
        yield url


def _prepare(url: str) -> None:
    migrate.upgrade(url)

    async def create() -> None:
        async with ledger(url) as database, database.transaction() as db:
            await db.execute(text(CREATE_LEDGER))

    asyncio.run(create())


@asynccontextmanager
async def ledger(url: str) -> AsyncIterator[Database]:
    """The test process's own connection to the database the workers use."""
    settings = make_settings(url, Path.cwd())
    configure_logging(settings.log_level, settings.log_format)
    database = Database(settings)
    try:
        yield database
    finally:
        await database.dispose()


@contextmanager
def redis_prefix() -> Iterator[dict[str, str]]:
    """Settings that put worker processes on Redis under a prefix of their own (dropped at
    the end), so their wake-ups and presence cross processes."""
    require_redis()
    prefix = f"testjobs{secrets.token_hex(4)}"
    try:
        yield {"AGENTHUB_REDIS_URL": redis_url(), "AGENTHUB_REDIS_PREFIX": prefix}
    finally:
        drop_prefix(prefix)


def worker_env(url: str, **settings: str) -> dict[str, str]:
    """The environment of a worker process on `url` that can run `test.effect` jobs, with a
    short lease and backoff so a killed worker's jobs come back within seconds."""
    defaults = {
        "AGENTHUB_DATABASE_URL": url,
        "AGENTHUB_SECRET_KEY": TEST_SECRET,
        "AGENTHUB_AUTO_MIGRATE": "false",
        "AGENTHUB_LOG_LEVEL": "WARNING",
        "AGENTHUB_JOB_MODULES": MODULE,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")])),
        "AGENTHUB_JOB_LEASE_SECONDS": "2",
        "AGENTHUB_JOB_BACKOFF_BASE_SECONDS": "0.05",
        "AGENTHUB_JOB_POLL_SECONDS": "0.2",
    }
    return clean_env(**{**defaults, **settings})


@dataclass
class WorkerProcess:
    """A running `agenthub worker`; its output goes to `log`."""

    proc: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def terminate(self, timeout: float = 30) -> tuple[int, float]:
        """SIGTERM, then wait: the exit code and the seconds it took to exit."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"worker ignored SIGTERM: {self.output()}") from None
        return code, time.monotonic() - began

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Workers:
    """The worker processes a test started (in `workdir`); all stopped at the end."""

    workdir: Path
    env: dict[str, str]
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self, *args: str) -> WorkerProcess:
        log = self.workdir / f"worker-{len(self.started)}.log"
        with log.open("wb") as sink:
            proc = subprocess.Popen(
                [*AGENTHUB, "worker", *args],
                cwd=self.workdir,
                env=self.env,
                stdout=sink,
                stderr=sink,
            )
        worker = WorkerProcess(proc, log)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            if worker.proc.poll() is None:
                worker.kill()


@contextmanager
def workers(workdir: Path, env: dict[str, str]) -> Iterator[Workers]:
    """A group of worker processes on `env`; on Redis under a prefix of their own unless `env`
    names a Redis (`agenthub worker` needs one)."""
    with ExitStack() as stack:
        if "AGENTHUB_REDIS_URL" not in env:
            env = {**env, **stack.enter_context(redis_prefix())}
        group = Workers(workdir, env)
        try:
            yield group
        finally:
            group.stop_all()


async def enqueue_effects(database: Database, count: int, sleep_ms: int = 0) -> list[str]:
    """Enqueue `count` `test.effect` jobs (no user), a thousand per transaction; their ids."""
    ids: list[str] = []
    for start in range(0, count, ENQUEUE_BATCH):
        async with database.transaction() as db:
            for _ in range(min(ENQUEUE_BATCH, count - start)):
                new = NewJob(kind=EFFECT, input={"sleep_ms": sleep_ms})
                job = await enqueue(db, new, default_timeout=30, kind=KINDS[EFFECT])
                ids.append(job.id)
    return ids


async def statuses(database: Database, kind: str = EFFECT) -> dict[str, int]:
    """How many jobs of `kind` are in each status."""
    async with database.transaction() as db:
        rows = await db.execute(
            text("SELECT status, count(*) FROM jobs WHERE kind = :kind GROUP BY status"),
            {"kind": kind},
        )
        return {status: int(n) for status, n in rows.all()}


async def wait_until(
    database: Database, done: Callable[[dict[str, int]], bool], within: float, kind: str = EFFECT
) -> dict[str, int]:
    """Poll the status counts until `done(counts)` holds; fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        counts = await statuses(database, kind)
        if done(counts):
            return counts
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; jobs by status: {counts}")
        await asyncio.sleep(0.2)


def settled(counts: dict[str, int]) -> bool:
    return not counts.get("queued") and not counts.get("running") and bool(counts)


async def effects_by_job(database: Database) -> dict[str, list[tuple[int, str]]]:
    """The ledger: each job's recorded (attempt, worker_id) rows."""
    async with database.transaction() as db:
        rows = (await db.execute(text("SELECT job_id, attempt, worker_id FROM job_effects"))).all()
    ledger_rows: dict[str, list[tuple[int, str]]] = {}
    for job_id, attempt, worker_id in rows:
        ledger_rows.setdefault(job_id, []).append((int(attempt), worker_id))
    return ledger_rows


class JobRow(NamedTuple):
    status: str
    attempts: int
    worker: str | None


async def job_rows(database: Database, kind: str = EFFECT) -> dict[str, JobRow]:
    """Each job of `kind`: its status, attempts and worker."""
    async with database.transaction() as db:
        rows = await db.execute(
            text("SELECT id, status, attempts, worker_id FROM jobs WHERE kind = :kind"),
            {"kind": kind},
        )
        return {r.id: JobRow(r.status, int(r.attempts), r.worker_id) for r in rows}


async def assert_completed_exactly_once(database: Database, ids: list[str]) -> int:
    """Every job completed, with exactly one ledger row, written by its final attempt on the
    worker that completed it; returns the attempts beyond the first (re-runs after a crash)."""
    jobs = await job_rows(database)
    effects = await effects_by_job(database)
    assert jobs.keys() == set(ids)
    unfinished = {i: j for i, j in jobs.items() if j.status != "completed"}
    assert not unfinished, f"{len(unfinished)} jobs not completed: {list(unfinished.items())[:5]}"
    repeated = {i: rows for i, rows in effects.items() if len(rows) != 1}
    assert not repeated, f"effects recorded more than once: {list(repeated.items())[:5]}"
    assert effects.keys() == set(ids), f"jobs without effect: {list(set(ids) - effects.keys())[:5]}"
    stale = {
        i: (jobs[i], effects[i][0])
        for i in ids
        if effects[i][0] != (jobs[i].attempts, jobs[i].worker)
    }
    assert not stale, f"effects written by an earlier attempt: {list(stale.items())[:5]}"
    return sum(j.attempts for j in jobs.values()) - len(ids)
