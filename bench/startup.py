"""Benchmark start-up and footprint of the embedded default: `agenthub serve`, no configuration.

Each agenthub run starts the installed `agenthub serve` (SQLite, in-process broker and worker)
in a temporary directory, with no `AGENTHUB_*` variable in its environment, and polls
`GET /v1/health/ready` every 10 ms until it answers 200. The time to ready runs from spawning
the process to that answer; the server's CPU time (user + system) is read then and its RSS
`--idle` seconds later, then it is stopped with SIGTERM. A *first start* gets a new empty
directory (the migrations run), a *restart* a migrated one. The baseline is the raw stack
(`bench/startup_baseline.py`: FastAPI, pydantic, the SQLAlchemy ORM on aiosqlite, one route)
started by `python -m uvicorn` on a new directory and polled on `GET /ready` alike. After an
unmeasured warm-up round the three alternate, `--runs` times each, so that background load hits
them alike. Then the wall time of `agenthub --help` (`--runs` times) and the `--top` largest
cumulative entries of `python -X importtime` importing the CLI and the app.

    .venv/bin/python bench/startup.py [--runs 5] [--idle 2] [--top 15]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from common import (
    BENCH_DIR,
    STARTUP_TIMEOUT_S,
    exit_on_sigterm,
    free_port,
    log_tail,
    run_main,
    stop_process,
    versions_line,
)

AGENTHUB = str(Path(sys.executable).with_name("agenthub"))
POLL_S = 0.01
IMPORTS = "import agenthub.cli, agenthub.app"


@dataclass(frozen=True)
class Start:
    """What one start measured."""

    ready_s: float
    cpu_s: float
    rss_mib: float


@dataclass(frozen=True)
class Kind:
    """A kind of start: its label, command for a port, readiness path, and whether each run
    gets a new directory."""

    label: str
    command: Callable[[int], list[str]]
    ready_path: str
    fresh: bool


def agenthub_serve(port: int) -> list[str]:
    return [AGENTHUB, "serve", "--port", str(port)]


def raw_stack(port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "startup_baseline:create_app",
        "--factory",
        "--app-dir",
        str(BENCH_DIR),
        "--port",
        str(port),
    ]


FIRST = Kind("agenthub serve, first start", agenthub_serve, "/v1/health/ready", fresh=True)
RESTART = Kind("agenthub serve, restart", agenthub_serve, "/v1/health/ready", fresh=False)
BASELINE = Kind("raw stack (FastAPI, SQLAlchemy, uvicorn)", raw_stack, "/ready", fresh=True)
KINDS = (FIRST, RESTART, BASELINE)


def clean_env() -> dict[str, str]:
    """The caller's environment without any `AGENTHUB_*` setting: no configuration at all."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")}


def start(kind: Kind, workdir: Path, idle_s: float) -> Start:
    """Start `kind` in `workdir`, wait for its first 200, read CPU and idle RSS, stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}{kind.ready_path}"
    log_path = workdir / "server.log"
    with httpx.Client(timeout=STARTUP_TIMEOUT_S) as client, log_path.open("ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen(
            kind.command(port), cwd=workdir, env=clean_env(), stdout=log, stderr=log
        )
        try:
            ready_s = _ready(client, proc, url, log_path) - started
            server = psutil.Process(proc.pid)
            cpu = server.cpu_times()
            time.sleep(idle_s)
            rss = server.memory_info().rss
        finally:
            stop_process(proc)
    return Start(ready_s, cpu.user + cpu.system, rss / 2**20)


def _ready(client: httpx.Client, proc: subprocess.Popen[bytes], url: str, log_path: Path) -> float:
    """`time.perf_counter()` when `url` first answers 200; fails if the server exits first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode} at start:\n{log_tail(log_path)}")
        try:
            if client.get(url).status_code == 200:
                return time.perf_counter()
        except httpx.TransportError:
            pass
        time.sleep(POLL_S)
    raise RuntimeError(f"not ready after {STARTUP_TIMEOUT_S:.0f} s:\n{log_tail(log_path)}")


def help_times(runs: int) -> list[float]:
    """Wall time of `agenthub --help`, `runs` times."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([AGENTHUB, "--help"], env=clean_env(), stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return times


def import_profile() -> list[tuple[int, int, str]]:
    """(cumulative µs, self µs, module) of each module `IMPORTS` imports."""
    stderr = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", IMPORTS],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    rows = []
    for line in stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            self_us, cumulative_us, module = line.removeprefix("import time:").split("|")
            rows.append((int(cumulative_us), int(self_us), module.strip()))
    return rows


def bytecode_line() -> str:
    """Whether compiled bytecode is cached for agenthub and a dependency: without it every
    start compiles each module it imports."""

    def cached(module: str) -> str:
        spec = importlib.util.find_spec(module)
        origin = spec.origin if spec is not None else None
        found = origin is not None and Path(importlib.util.cache_from_source(origin)).exists()
        return "cached" if found else "absent"

    flag = os.environ.get("PYTHONDONTWRITEBYTECODE", "unset")
    return (
        f"bytecode: agenthub {cached('agenthub.app')}, fastapi {cached('fastapi.routing')} "
        f"(PYTHONDONTWRITEBYTECODE={flag})"
    )


def measure(runs: int, idle_s: float) -> tuple[dict[Kind, list[Start]], list[float]]:
    """A warm-up round, then `runs` rounds of the three kinds; the load average of each."""
    starts: dict[Kind, list[Start]] = {kind: [] for kind in KINDS}
    loads = []
    with tempfile.TemporaryDirectory(prefix="agenthub-startup-") as tmp:
        root = Path(tmp)
        migrated = root / "migrated"
        migrated.mkdir()
        for round_ in range(runs + 1):
            loads.append(os.getloadavg()[0])
            for kind in KINDS:
                workdir = Path(tempfile.mkdtemp(dir=root)) if kind.fresh else migrated
                result = start(kind, workdir, idle_s)
                if round_:
                    starts[kind].append(result)
    return starts, loads[1:]


def report(
    starts: dict[Kind, list[Start]],
    loads: list[float],
    helps: list[float],
    imports: list[tuple[int, int, str]],
    top: int,
) -> None:
    base = starts[BASELINE]
    base_ready = statistics.median(s.ready_s for s in base)
    base_cpu = statistics.median(s.cpu_s for s in base)
    base_rss = statistics.median(s.rss_mib for s in base)
    print(
        f"\n{len(base)} runs of each, alternating; load average "
        f"{', '.join(f'{v:.1f}' for v in loads)} at the start of each round"
    )
    print(
        f"{'':<42}{'ready p50':>10}{'max':>8}{'CPU p50':>9}{'idle RSS':>10}"
        "   ratio to raw stack (ready / CPU / RSS)"
    )
    for kind in KINDS:
        runs = starts[kind]
        ready = statistics.median(s.ready_s for s in runs)
        cpu = statistics.median(s.cpu_s for s in runs)
        rss = statistics.median(s.rss_mib for s in runs)
        ratios = (
            f"{ready / base_ready:.2f}x / {cpu / base_cpu:.2f}x / {rss / base_rss:.2f}x"
            if kind is not BASELINE
            else ""
        )
        print(
            f"{kind.label:<42}{ready:>8.2f} s{max(s.ready_s for s in runs):>6.2f} s"
            f"{cpu:>7.2f} s{rss:>6.0f} MiB   {ratios}"
        )
    print(f"\nagenthub --help: p50 {statistics.median(helps):.2f} s, max {max(helps):.2f} s")
    total_ms = sum(self_us for _, self_us, _ in imports) / 1000
    print(
        f"\npython -X importtime -c '{IMPORTS}': {total_ms:.0f} ms in all; "
        f"the {top} largest cumulative entries"
    )
    print(f"{'cumulative ms':>14}{'self ms':>9}  module")
    for cumulative_us, self_us, module in sorted(imports, reverse=True)[:top]:
        print(f"{cumulative_us / 1000:>14.1f}{self_us / 1000:>9.1f}  {module}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--idle", type=float, default=2.0, help="seconds before reading RSS")
    parser.add_argument("--top", type=int, default=15)
    opts = parser.parse_args(argv)
    exit_on_sigterm()
    print(versions_line("agenthub start-up benchmark (embedded default)"))
    print(bytecode_line(), flush=True)
    starts, loads = measure(opts.runs, opts.idle)
    report(starts, loads, help_times(opts.runs), import_profile(), opts.top)
    return 0


if __name__ == "__main__":
    run_main(main)
