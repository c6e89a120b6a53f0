"""Load both deployments (docs/operations.md) with `agenthub bench` and compare them.

(a) embedded: one `agenthub serve` on a temp SQLite file, in-process broker, rate limits,
    cache and job worker;
(b) scale-out: two `agenthub serve --no-worker` API processes on their own ports and one
    `agenthub worker`, on a fresh PostgreSQL database (dropped at the end) and Redis under a
    unique key prefix (its keys deleted at the end); the virtual users alternate between the
    two ports and each WebSocket subscriber connects to the other port than its user, so every
    event crosses nodes through Redis.

Each deployment gets the same load: `agenthub bench --users U --duration D` (its `Bench`,
run in this process with its progress bar; a `--warmup` run with other users first, discarded).
The servers run with rate limits off and login limits raised (a load test from one machine),
everything else at its defaults (Argon2id password hashing included). Printed: both result
tables, the CPU seconds each process group used during the measured run, and per operation
the ratio scale-out / embedded of throughput and p50/p99 latency.

    .venv/bin/python bench/load.py [--users 20] [--duration 20] [--warmup 3]
        [--subscribers N] [--messages-per-session 20] [--only embedded|scale-out]
        [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import redis
from rich.console import Console
from rich.table import Table

from agenthub.db import migrate
from agenthub.load.command import run_with_progress
from agenthub.load.report import Figures, Latency, Report
from agenthub.load.runner import Bench, BenchConfig
from agenthub.load.scenario import Operation
from common import (
    exit_on_sigterm,
    free_port,
    log_tail,
    postgres_database,
    server_env,
    sqlite_database,
    stop_process,
    versions_line,
    wait_ready,
)
from jobs import cpu_since, pg_backends_cpu, pg_name

LOAD_SETTINGS = {
    "AGENTHUB_RATE_LIMIT_ENABLED": "false",
    "AGENTHUB_LOGIN_LIMIT_IP": "1000000/minute",
    "AGENTHUB_LOGIN_LIMIT_ACCOUNT": "1000000/minute",
    "AGENTHUB_WS_CONNECT_LIMIT": "1000000/minute",
}
EMBEDDED, SCALE_OUT = "embedded", "scale-out"

out = Console(width=120)
err = Console(stderr=True)


@dataclass(frozen=True)
class Options:
    users: int
    duration: float
    warmup: float
    subscribers: int
    messages_per_session: int
    deployments: tuple[str, ...]
    redis_url: str


@dataclass(frozen=True)
class Outcome:
    deployment: str
    report: Report
    cpu: dict[str, float]  # CPU seconds per process group during the measured run
    load_avg: tuple[float, float, float]  # when the measured run began


# --- processes ----------------------------------------------------------------------------


@contextmanager
def agenthub(workdir: Path, env: dict[str, str], name: str, *args: str) -> Iterator[psutil.Process]:
    """`python -m agenthub ARGS`, stopped with SIGTERM (then SIGKILL) on the way out; with
    `--port P` in ARGS, live (`GET /v1/health/live`) before it is yielded."""
    log = workdir / f"{name}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agenthub", *args],
            cwd=workdir,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        if "--port" in args:
            wait_ready(proc, f"http://127.0.0.1:{args[args.index('--port') + 1]}", log)
        yield psutil.Process(proc.pid)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_tail(log)}")
    finally:
        stop_process(proc)


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


def redis_server(redis_url: str) -> list[psutil.Process]:
    """The local redis-server process listening on the URL's port (none if not found)."""
    port = f":{urlsplit(redis_url).port or 6379}"
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "redis-server" and port in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def delete_prefix(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


# --- runs ---------------------------------------------------------------------------------

Meters = dict[str, Callable[[], float]]


def measure(deployment: str, urls: list[str], meters: Meters, opts: Options) -> Outcome:
    """A discarded warm-up run, then the measured one; CPU is read when the measured run's
    requests start and when they stop (registration and the event drain are left out)."""

    def config(duration: float) -> BenchConfig:
        return BenchConfig(
            urls=tuple(urls),
            users=opts.users,
            subscribers=opts.subscribers,
            duration=duration,
            requests=None,
            messages_per_session=opts.messages_per_session,
        )

    if opts.warmup > 0:
        err.print(f"[bold]{deployment}[/bold]: warm-up {opts.warmup:g} s")
        asyncio.run(run_with_progress(Bench(config(opts.warmup)), err))
    err.print(f"[bold]{deployment}[/bold]: {opts.users} users for {opts.duration:g} s")
    readings: dict[str, dict[str, float]] = {}
    load_avg: list[tuple[float, float, float]] = []

    def read(phase: str) -> None:
        if phase in ("running", "draining"):
            readings[phase] = {name: meter() for name, meter in meters.items()}
        if phase == "running":
            load_avg.append(os.getloadavg())

    report = asyncio.run(run_with_progress(Bench(config(opts.duration), on_phase=read), err))
    before, after = readings["running"], readings["draining"]
    return Outcome(deployment, report, {n: after[n] - before[n] for n in meters}, load_avg[0])


def embedded(opts: Options) -> Outcome:
    with sqlite_database() as (database_url, workdir):
        env = server_env(database_url, workdir, AGENTHUB_AUTO_MIGRATE="true", **LOAD_SETTINGS)
        port = free_port()
        with agenthub(workdir, env, "serve", "serve", "--port", str(port)) as server:
            meters: Meters = {
                "load generator": lambda: cpu_seconds([psutil.Process()]),
                "server": lambda: cpu_seconds([server]),
            }
            return measure(EMBEDDED, [f"http://127.0.0.1:{port}"], meters, opts)


def scale_out(opts: Options) -> Outcome:
    prefix = f"bench{secrets.token_hex(4)}"
    with postgres_database() as (database_url, workdir), ExitStack() as stack:
        stack.callback(delete_prefix, opts.redis_url, prefix)
        migrate.upgrade(database_url)
        env = server_env(
            database_url,
            workdir,
            AGENTHUB_REDIS_URL=opts.redis_url,
            AGENTHUB_REDIS_PREFIX=prefix,
            **LOAD_SETTINGS,
        )
        worker = stack.enter_context(agenthub(workdir, env, "worker", "worker"))
        ports = [free_port(), free_port()]
        servers = [
            stack.enter_context(
                agenthub(workdir, env, f"serve-{port}", "serve", "--no-worker", "--port", str(port))
            )
            for port in ports
        ]
        database = pg_name(database_url)
        redis_processes = redis_server(opts.redis_url)
        meters: Meters = {
            "load generator": lambda: cpu_seconds([psutil.Process()]),
            "API servers": lambda: cpu_seconds(servers),
            "worker": lambda: cpu_seconds([worker]),
            "PostgreSQL": lambda: cpu_since({}, pg_backends_cpu(database)),
            "Redis": lambda: cpu_seconds(redis_processes),
        }
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        return measure(SCALE_OUT, urls, meters, opts)


# --- report -------------------------------------------------------------------------------


def print_outcome(outcome: Outcome) -> None:
    cpu = ", ".join(f"{name} {seconds:.1f}" for name, seconds in outcome.cpu.items())
    one, five, _ = outcome.load_avg
    out.print(
        f"\n[bold]{outcome.deployment}[/bold] (load average {one:.2f} / {five:.2f} at start); "
        f"CPU seconds during the {outcome.report.elapsed:.1f} s run "
        f"({os.cpu_count()} cores): {cpu}"
    )
    out.print(outcome.report.tables())


def _ratio(new: float, old: float) -> str:
    if math.isnan(new) or math.isnan(old) or old == 0:
        return "-"
    return f"{new / old:.2f}x"


def print_ratios(base: Outcome, other: Outcome) -> None:
    table = Table(title=f"{other.deployment} / {base.deployment}", title_justify="left")
    table.add_column("operation", no_wrap=True)
    for group in ("req/s", "p50 ms", "p99 ms"):
        for column in (base.deployment, other.deployment, "ratio"):
            table.add_column(f"{group}\n{column}", justify="right")

    def row(name: str, a: Figures | None, b: Figures | None, la: Latency, lb: Latency) -> None:
        rates = (
            ("", "", "")
            if a is None or b is None
            else (
                f"{a.throughput:,.1f}",
                f"{b.throughput:,.1f}",
                _ratio(b.throughput, a.throughput),
            )
        )
        table.add_row(
            name,
            *rates,
            f"{la.p50:,.1f}",
            f"{lb.p50:,.1f}",
            _ratio(lb.p50, la.p50),
            f"{la.p99:,.1f}",
            f"{lb.p99:,.1f}",
            _ratio(lb.p99, la.p99),
        )

    for op in Operation:
        a, b = base.report.operations[op], other.report.operations[op]
        row(op.value, a, b, a.latency, b.latency)
    row(
        "total",
        base.report.total,
        other.report.total,
        base.report.total.latency,
        other.report.total.latency,
    )
    row("ws delivery", None, None, base.report.websocket.latency, other.report.websocket.latency)
    out.print()
    out.print(table)


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds, discarded (0: none)")
    parser.add_argument("--subscribers", type=int, help="WebSocket subscribers (default: users)")
    parser.add_argument("--messages-per-session", type=int, default=20)
    parser.add_argument("--only", choices=(EMBEDDED, SCALE_OUT))
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    if min(args.users, args.messages_per_session) < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--users, --messages-per-session and --duration must be positive")
    return Options(
        users=args.users,
        duration=args.duration,
        warmup=args.warmup,
        subscribers=args.users if args.subscribers is None else args.subscribers,
        messages_per_session=args.messages_per_session,
        deployments=(args.only,) if args.only else (EMBEDDED, SCALE_OUT),
        redis_url=args.redis_url,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    exit_on_sigterm()
    out.print(f"{versions_line('agenthub bench load')}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    out.print(
        f"equivalent command: agenthub bench --users {opts.users} --duration {opts.duration:g} "
        f"--subscribers {opts.subscribers} --messages-per-session {opts.messages_per_session}"
    )
    runs = {EMBEDDED: embedded, SCALE_OUT: scale_out}
    outcomes = [runs[name](opts) for name in opts.deployments]
    for outcome in outcomes:
        print_outcome(outcome)
    if len(outcomes) == 2:
        print_ratios(*outcomes)
    return 1 if any(o.report.failed for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
