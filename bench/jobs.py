"""Benchmark the job queue: no-op throughput and enqueue-to-start latency, next to procrastinate.

Each configuration gets fresh worker processes and a fresh database: agenthub's
(`python -m agenthub worker --concurrency C`, the `bench.noop` kind of `noop_kinds.py`) on
PostgreSQL with Redis wake-ups, 1 and 2 processes; on PostgreSQL without wake-ups (the
enqueuer announces nothing: workers find jobs by polling every `AGENTHUB_JOB_POLL_SECONDS`,
2 s), 1 process; on a SQLite file with Redis, 1 process. The peer, procrastinate
(`jobs_peer.py`: LISTEN/NOTIFY wake-ups), runs the same no-op task with the same processes and
concurrency on its own database of the same server.

- **Throughput.** With the workers started and idle, K jobs are enqueued in one transaction;
  jobs/s = K / (last job finished - first job started), both read back from the queue's own
  timestamps. Also printed: the CPU time per job of all worker processes and of the PostgreSQL
  server processes serving them (from just before the enqueue until the last job completed),
  and how long the one-transaction enqueue took.
- **Latency.** With the same workers idle again, jobs are enqueued one per transaction at a
  fixed rate; enqueue-to-start is `started_at - created_at` of the jobs table (procrastinate:
  its `started` event - its `deferred` event), p50/p95/p99. Also printed: how long one
  enqueue transaction took in the client (commit and wake-up included).

    .venv/bin/python bench/jobs.py [--jobs 5000] [--latency-jobs 200] [--rate 20]
        [--concurrency 10] [--workers 1,2] [--no-peer] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Protocol

import psutil
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from agenthub.config import Settings
from agenthub.core.events import log_publisher
from agenthub.core.logging import configure_logging
from agenthub.db import migrate
from agenthub.db.engine import Database, create_engine
from agenthub.db.models.jobs import Job
from agenthub.jobs.service import NewJob, enqueue
from agenthub.realtime.relay import EventRelay
from agenthub.wiring import create_broker
from common import (
    BENCH_DIR,
    exit_on_sigterm,
    log_tail,
    percentile,
    pg_dsn,
    postgres_database,
    server_env,
    sqlite_database,
)
from noop_kinds import NOOP

PG_PORT = 5432
IDLE_CPU_S = 0.02
"""A worker process counts as idle (started up, waiting for jobs) below this CPU per second."""
IDLE_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 600.0
STOP_TIMEOUT_S = 20.0


class Queue(Protocol):
    """What the benchmark needs of a queue (agenthub's here, procrastinate's in jobs_peer)."""

    label: str
    pg_database: str | None
    """The PostgreSQL database's name (its server processes' CPU is measured); None: SQLite."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    def worker_command(self, concurrency: int) -> list[str]: ...
    def worker_env(self) -> dict[str, str]: ...
    async def enqueue_batch(self, count: int) -> None: ...
    async def enqueue_one(self) -> str: ...
    async def progress(self) -> tuple[int, int]: ...
    async def busy_seconds(self) -> float: ...
    async def latencies(self, ids: list[str]) -> list[float]: ...


class Agenthub:
    """agenthub's queue on one database: enqueued through `jobs.service.enqueue` (as the API
    does), announced through Redis when `announce`, read back from `jobs`. The workers are on
    Redis either way (`agenthub worker` needs it)."""

    label = "agenthub"

    def __init__(self, database_url: str, workdir: Path, redis_url: str, announce: bool) -> None:
        self.database_url = database_url
        self.workdir = workdir
        self.redis_url = redis_url
        self.pg_database = None if database_url.startswith("sqlite") else pg_name(database_url)
        self.prefix = f"agenthub-bench-{secrets.token_hex(4)}"
        self.settings = Settings(
            _env_file=None,
            database_url=database_url,
            redis_url=redis_url,
            redis_prefix=self.prefix,
        )
        engine = create_engine(self.settings)
        self.broker = create_broker(self.settings) if announce else None
        self.relay = None
        if self.broker is not None:
            sessions = async_sessionmaker(engine, expire_on_commit=False)
            self.relay = EventRelay(self.settings, self.broker, sessions)
        publisher = log_publisher if self.relay is None else self.relay.submit
        self.database = Database(self.settings, engine=engine, publisher=publisher)

    async def start(self) -> None:
        if self.relay is not None:
            self.relay.start()

    async def close(self) -> None:
        if self.relay is not None:
            await self.relay.close()
        if self.broker is not None:
            await self.broker.close()
        await self.database.dispose()
        await _redis_delete(self.redis_url, self.prefix)

    def worker_command(self, concurrency: int) -> list[str]:
        return [sys.executable, "-m", "agenthub", "worker", "--concurrency", str(concurrency)]

    def worker_env(self) -> dict[str, str]:
        return server_env(
            self.database_url,
            self.workdir,
            AGENTHUB_JOB_MODULES="noop_kinds",
            PYTHONPATH=str(BENCH_DIR),
            AGENTHUB_REDIS_URL=self.redis_url,
            AGENTHUB_REDIS_PREFIX=self.prefix,
        )

    async def enqueue_batch(self, count: int) -> None:
        timeout = self.settings.job_default_timeout_seconds
        async with self.database.transaction() as db:
            for _ in range(count):
                await enqueue(db, NewJob(kind=NOOP), default_timeout=timeout)

    async def enqueue_one(self) -> str:
        timeout = self.settings.job_default_timeout_seconds
        async with self.database.transaction() as db:
            job = await enqueue(db, NewJob(kind=NOOP), default_timeout=timeout)
        return job.id

    async def progress(self) -> tuple[int, int]:
        async with self.database.sessions() as db:
            rows = await db.execute(
                select(Job.status, func.count())
                .where(Job.kind == NOOP, Job.status.in_(("completed", "failed", "canceled")))
                .group_by(Job.status)
            )
            counts = {status: int(n) for status, n in rows.all()}
        return counts.get("completed", 0), counts.get("failed", 0) + counts.get("canceled", 0)

    async def busy_seconds(self) -> float:
        async with self.database.sessions() as db:
            row = (
                await db.execute(
                    select(func.min(Job.started_at), func.max(Job.finished_at)).where(
                        Job.kind == NOOP
                    )
                )
            ).one()
        first, last = row
        if first is None or last is None:
            raise RuntimeError("no job ran")
        return float((last - first).total_seconds())

    async def latencies(self, ids: list[str]) -> list[float]:
        async with self.database.sessions() as db:
            rows = await db.execute(select(Job.created_at, Job.started_at).where(Job.id.in_(ids)))
            return [
                (started - created).total_seconds()
                for created, started in rows.all()
                if started is not None
            ]


async def _redis_delete(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


def pg_name(url: str) -> str:
    """The database name at the end of a PostgreSQL URL or DSN."""
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def pg_backends_cpu(database: str | None) -> dict[int, float]:
    """CPU seconds of each PostgreSQL server process serving `database` to a worker (by pid):
    the connections of this process (enqueueing, counting) are left out."""
    if database is None:
        return {}
    own = {
        f"({conn.laddr.port})"
        for conn in psutil.Process().net_connections("tcp")
        if conn.raddr and conn.raddr.port == PG_PORT
    }
    cpu: dict[int, float] = {}
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        title = " ".join(proc.info["cmdline"] or [])  # "postgres: 15/main: USER DB HOST(PORT) ..."
        times = proc.info["cpu_times"]
        if times is None or not title.startswith("postgres:") or f" {database} " not in title:
            continue
        if not any(port in title for port in own):
            cpu[proc.pid] = times.user + times.system
    return cpu


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two `pg_backends_cpu` readings (a process that has since exited is
    lost; the pools keep their connections, so few do)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


# --- worker processes ------------------------------------------------------------------------


@dataclass
class Workers:
    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def check(self) -> None:
        for proc, log in zip(self.processes, self.logs, strict=True):
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}:\n{log_tail(log)}")

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.processes:
            times = psutil.Process(proc.pid).cpu_times()
            total += times.user + times.system
        return total


@contextmanager
def worker_processes(
    queue: Queue, count: int, concurrency: int, workdir: Path
) -> Iterator[Workers]:
    """`count` worker processes of `queue`, stopped (SIGTERM, then SIGKILL) on the way out."""
    workers = Workers([], [])
    try:
        for index in range(count):
            log = workdir / f"{queue.label}-worker-{index}.log"
            env = {**os.environ, **queue.worker_env()}
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    queue.worker_command(concurrency),
                    env=env,
                    cwd=workdir,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            workers.processes.append(proc)
            workers.logs.append(log)
        yield workers
    finally:
        for proc in workers.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in workers.processes:
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_idle(workers: Workers) -> None:
    """Until every worker process has started up and waits (its CPU use near zero)."""
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    await asyncio.sleep(1.0)
    last = [psutil.Process(p.pid).cpu_times() for p in workers.processes]
    while time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        workers.check()
        now = [psutil.Process(p.pid).cpu_times() for p in workers.processes]
        busy = [
            (b.user + b.system - a.user - a.system) / 0.5 for a, b in zip(last, now, strict=True)
        ]
        if max(busy) < IDLE_CPU_S:
            return
        last = now
    raise RuntimeError(f"workers still busy after {IDLE_TIMEOUT_S:.0f} s")


async def wait_done(queue: Queue, workers: Workers, total: int) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        done, failed = await queue.progress()
        if failed:
            raise RuntimeError(f"{queue.label}: {failed} jobs failed")
        if done >= total:
            return
        workers.check()
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{queue.label}: not all {total} jobs done after {DRAIN_TIMEOUT_S:.0f} s")


# --- measurements --------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    jobs: int
    latency_jobs: int
    rate: float
    concurrency: int
    workers: list[int]
    peer: bool
    redis_url: str


@dataclass
class Result:
    queue: str  # agenthub / procrastinate
    backend: str
    workers: int
    enqueue_batch_s: float = math.nan
    jobs_per_s: float = math.nan
    cpu_us_per_job: float = math.nan
    db_cpu_us_per_job: float = math.nan  # PostgreSQL server processes of the database
    latency_ms: list[float] = field(default_factory=list)  # sorted
    enqueue_ms: list[float] = field(default_factory=list)  # sorted
    load_avg: float = field(default_factory=lambda: os.getloadavg()[0])  # when it started

    def latency(self, q: float) -> float:
        return percentile(self.latency_ms, q)


async def measure(queue: Queue, result: Result, opts: Options, workdir: Path) -> Result:
    await queue.start()
    try:
        with worker_processes(queue, result.workers, opts.concurrency, workdir) as workers:
            await wait_idle(workers)
            # Throughput: K jobs in one transaction while the workers wait.
            cpu_before = workers.cpu_seconds()
            db_before = pg_backends_cpu(queue.pg_database)
            started = time.perf_counter()
            await queue.enqueue_batch(opts.jobs)
            result.enqueue_batch_s = time.perf_counter() - started
            await wait_done(queue, workers, opts.jobs)
            result.cpu_us_per_job = (workers.cpu_seconds() - cpu_before) / opts.jobs * 1e6
            if queue.pg_database is not None:
                db_cpu = cpu_since(db_before, pg_backends_cpu(queue.pg_database))
                result.db_cpu_us_per_job = db_cpu / opts.jobs * 1e6
            result.jobs_per_s = opts.jobs / await queue.busy_seconds()
            # Latency: one job per transaction at a fixed rate, the workers idle in between.
            await wait_idle(workers)
            ids: list[str] = []
            enqueue_s: list[float] = []
            begin = time.perf_counter()
            for index in range(opts.latency_jobs):
                await asyncio.sleep(max(0.0, begin + index / opts.rate - time.perf_counter()))
                started = time.perf_counter()
                ids.append(await queue.enqueue_one())
                enqueue_s.append(time.perf_counter() - started)
            await wait_done(queue, workers, opts.jobs + opts.latency_jobs)
            result.latency_ms = sorted(s * 1000 for s in await queue.latencies(ids))
            result.enqueue_ms = sorted(s * 1000 for s in enqueue_s)
    finally:
        await queue.close()
    _progress(result)
    return result


def _progress(result: Result) -> None:
    print(
        f"  ... {result.queue}, {result.backend}, {result.workers} worker(s): "
        f"{result.jobs_per_s:,.0f} jobs/s, latency p50 {result.latency(0.5):.1f} ms "
        f"p99 {result.latency(0.99):.1f} ms",
        file=sys.stderr,
        flush=True,
    )


PG_REDIS = "PostgreSQL + Redis"
PG_POLL = "PostgreSQL, polling"
PG_PEER = "PostgreSQL"
SQLITE_REDIS = "SQLite + Redis"


def bench_agenthub(backend: str, workers: int, opts: Options) -> Result:
    result = Result("agenthub", backend, workers)
    database = sqlite_database() if backend == SQLITE_REDIS else postgres_database()
    with database as (database_url, workdir):
        migrate.upgrade(database_url)
        queue = Agenthub(database_url, workdir, opts.redis_url, announce=backend != PG_POLL)
        return asyncio.run(measure(queue, result, opts, workdir))


def bench_peer(workers: int, opts: Options) -> Result:
    from jobs_peer import Procrastinate

    result = Result("procrastinate", PG_PEER, workers)
    with postgres_database() as (database_url, workdir):
        return asyncio.run(measure(Procrastinate(pg_dsn(database_url)), result, opts, workdir))


# --- report --------------------------------------------------------------------------------


def _ratio(ours: float, base: float) -> str:
    if not (math.isfinite(ours) and math.isfinite(base)) or base == 0:
        return ""
    return f"{ours / base:.2f}x"


def _peer_of(result: Result, results: list[Result], backends: tuple[str, ...]) -> Result | None:
    """The procrastinate result with as many worker processes, for agenthub on `backends`."""
    if result.queue != "agenthub" or result.backend not in backends:
        return None
    for other in results:
        if other.queue == "procrastinate" and other.workers == result.workers:
            return other
    return None


def print_report(results: list[Result], opts: Options) -> None:
    print(
        f"\nThroughput: {opts.jobs:,} no-op jobs enqueued in one transaction while the workers "
        f"wait; {opts.concurrency} jobs at once per worker process:"
    )
    print(
        f"  {'queue':<14} {'backend':<20} {'procs':>5} {'enqueue s':>9} {'jobs/s':>8} "
        f"{'ratio':>6} {'worker µs':>9} {'ratio':>6} {'db µs':>6} {'ratio':>6}"
    )
    for r in results:
        peer = _peer_of(r, results, (PG_REDIS, PG_POLL))
        cells = [
            f"{value:>{width},.0f} {_ratio(value, base) if peer else '':>6}"
            for value, base, width in (
                (r.jobs_per_s, peer.jobs_per_s if peer else math.nan, 8),
                (r.cpu_us_per_job, peer.cpu_us_per_job if peer else math.nan, 9),
                (r.db_cpu_us_per_job, peer.db_cpu_us_per_job if peer else math.nan, 6),
            )
        ]
        print(
            f"  {r.queue:<14} {r.backend:<20} {r.workers:>5} {r.enqueue_batch_s:>9.2f} "
            + " ".join(cells)
        )
    print(
        f"\nEnqueue-to-start latency: {opts.latency_jobs} jobs, one per transaction, "
        f"{opts.rate:g}/s, the workers idle; enqueue = one enqueue transaction in the client:"
    )
    print(
        f"  {'queue':<14} {'backend':<20} {'procs':>5} {'p50 ms':>7} {'ratio':>6} "
        f"{'p95 ms':>7} {'ratio':>6} {'p99 ms':>7} {'ratio':>6} {'max ms':>7} "
        f"{'enqueue p50':>11} {'ratio':>6}"
    )
    for r in results:
        peer = _peer_of(r, results, (PG_REDIS,))  # polling vs LISTEN/NOTIFY: no ratio
        cells = []
        for q in (0.5, 0.95, 0.99):
            ratio = _ratio(r.latency(q), peer.latency(q)) if peer else ""
            cells.append(f"{r.latency(q):>7.1f} {ratio:>6}")
        enqueue_p50 = percentile(r.enqueue_ms, 0.5)
        enqueue_ratio = _ratio(enqueue_p50, percentile(peer.enqueue_ms, 0.5)) if peer else ""
        print(
            f"  {r.queue:<14} {r.backend:<20} {r.workers:>5} {' '.join(cells)} "
            f"{r.latency(1.0):>7.1f} {enqueue_p50:>8.2f} ms {enqueue_ratio:>6}"
        )
    print(
        "\n  ratio = agenthub / procrastinate with the same number of worker processes. "
        "procrastinate runs on PostgreSQL only\n  (no SQLite peer) and wakes its workers with "
        "LISTEN/NOTIFY; agenthub without Redis polls every 2 s (no latency ratio).\n  "
        "worker µs / db µs: CPU time per job of all worker processes / of the PostgreSQL "
        "server processes serving them\n  (Redis's not included; nan on SQLite, which runs in "
        "the worker). 1-minute load average when each configuration\n  began (the previous "
        "one's processes included): " + ", ".join(f"{r.load_avg:.2f}" for r in results) + "."
    )
    sys.stdout.flush()


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=5000, help="throughput jobs (K)")
    parser.add_argument("--latency-jobs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="latency jobs enqueued a second")
    parser.add_argument("--concurrency", type=int, default=10, help="jobs at once per process")
    parser.add_argument("--workers", default="1,2", help="worker process counts on PostgreSQL")
    parser.add_argument("--no-peer", action="store_true", help="agenthub only")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    try:
        workers = [int(n) for n in args.workers.split(",")]
    except ValueError:
        parser.error("--workers takes numbers separated by commas")
    if min([args.jobs, args.latency_jobs, args.concurrency, *workers]) < 1 or args.rate <= 0:
        parser.error("counts and --rate must be positive")
    return Options(
        jobs=args.jobs,
        latency_jobs=args.latency_jobs,
        rate=args.rate,
        concurrency=args.concurrency,
        workers=workers,
        peer=not args.no_peer,
        redis_url=args.redis_url,
    )


def _peer_version() -> str:
    try:
        return f"procrastinate {version('procrastinate')}, psycopg {version('psycopg')}"
    except PackageNotFoundError:
        return "procrastinate not installed"


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    exit_on_sigterm()
    configure_logging("WARNING", "console")
    if opts.peer:
        try:
            import jobs_peer  # noqa: F401
        except ImportError as exc:
            print(f"{exc}: pip install -e '.[bench]' (or --no-peer)", file=sys.stderr)
            return 2
    print(
        f"agenthub job queue benchmark: python {sys.version.split()[0]}, sqlalchemy "
        f"{version('sqlalchemy')}, asyncpg {version('asyncpg')}, {_peer_version()}, "
        f"{os.cpu_count()} CPUs; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    sys.stdout.flush()
    results: list[Result] = []
    for workers in opts.workers:
        results.append(bench_agenthub(PG_REDIS, workers, opts))
        if opts.peer:
            results.append(bench_peer(workers, opts))
    results.append(bench_agenthub(PG_POLL, 1, opts))
    results.append(bench_agenthub(SQLITE_REDIS, 1, opts))
    print_report(results, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
