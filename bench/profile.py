"""Benchmark the authenticated hot path `GET /v1/user/profile` against a bare Starlette baseline.

For each database (a temp SQLite file, a fresh PostgreSQL database), the script migrates the
schema, starts agenthub under uvicorn, registers a user, logs in and creates an API key through
the HTTP API, then measures agenthub; it stops agenthub and measures the baseline
(`bench/profile_baseline.py`: same JWT check, same two queries, same JSON, no framework) with the
same user and token, on the same database and with the same uvicorn options. One server runs at
a time. Load comes from `wrk` when it is installed, else from an asyncio + httpx generator.
Printed per server: requests/s, p50/p99 latency, CPU time of the server process per request;
then the ratio agenthub / baseline.

    .venv/bin/python bench/profile.py [--db sqlite|postgres|both] [--duration S] [--warmup S]
        [--connections N] [--generator auto|wrk|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psutil

BENCH_DIR = Path(__file__).resolve().parent
PROFILE_PATH = "/v1/user/profile"
BENCH_SECRET = "agenthub-bench-secret-0f6c2b1e9d4a4c7b8e3f5a6d7c8b9a0e"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
AGENTHUB_TARGET = "agenthub.app:create_app"
BASELINE_TARGET = "profile_baseline:create_app"
# Identical for both servers; uvloop and httptools come with uvicorn[standard].
UVICORN_OPTIONS = (
    "--factory",
    "--host",
    "127.0.0.1",
    "--workers",
    "1",
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--log-level",
    "warning",
    "--no-access-log",
    "--timeout-graceful-shutdown",
    "5",
    "--app-dir",
    str(BENCH_DIR),
)
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Load:
    """What one load-generator run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    cpu_ms_per_request: float = math.nan  # CPU time of the server process (all its threads)


@dataclass(frozen=True)
class Server:
    """A running server process and where it listens."""

    base_url: str
    pid: int


@dataclass(frozen=True)
class Account:
    """The benchmark user: its access token and the profile agenthub returned for it."""

    token: str
    profile: dict[str, Any]


# --- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(database_url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")}
    env.update(
        AGENTHUB_DATABASE_URL=database_url,
        AGENTHUB_SECRET_KEY=BENCH_SECRET,
        AGENTHUB_SECRET_FILE=str(workdir / "secret"),
        AGENTHUB_FILES_DIR=str(workdir / "files"),
        AGENTHUB_LOG_LEVEL="WARNING",
        AGENTHUB_LOG_FORMAT="json",
        AGENTHUB_AUTO_MIGRATE="false",
    )
    return env


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def uvicorn_server(name: str, target: str, env: dict[str, str], workdir: Path) -> Iterator[Server]:
    """Run `target` in a uvicorn process on a free loopback port."""
    port = free_port()
    log_path = workdir / f"{name}.log"
    cmd = [sys.executable, "-m", "uvicorn", target, *UVICORN_OPTIONS, "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, base_url, log_path)
        yield Server(base_url, proc.pid)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    """Until the server answers HTTP at all (any status); fail early if it exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode} at start:\n{_log_tail(log_path)}"
                )
            try:
                client.get("/")
                return
            except httpx.TransportError:
                time.sleep(0.1)
    raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT_S:.0f} s:\n{_log_tail(log_path)}")


# --- set-up --------------------------------------------------------------------------------


def set_up_account(base_url: str) -> Account:
    """Register, log in and create an API key through agenthub's HTTP API."""
    email = f"bench-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(18)
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        resp = client.post(
            "/v1/auth/register", json={"email": email, "password": password, "username": "bench"}
        )
        _expect(resp, 201)
        resp = client.post("/v1/auth/login", json={"email": email, "password": password})
        _expect(resp, 200)
        token: str = resp.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        _expect(client.post("/v1/user/api-keys", json={"name": "bench"}, headers=headers), 201)
        resp = client.get(PROFILE_PATH, headers=headers)
        _expect(resp, 200)
        profile: dict[str, Any] = resp.json()
    if not profile["api_key_prefixes"]:
        raise RuntimeError("the profile lists no API key")
    return Account(token=token, profile=profile)


def check_same_profile(base_url: str, account: Account) -> None:
    """The baseline must return the JSON agenthub returned for the same token."""
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        resp = client.get(PROFILE_PATH, headers={"Authorization": f"Bearer {account.token}"})
    _expect(resp, 200)
    if resp.json() != account.profile:
        raise RuntimeError(
            f"baseline JSON differs:\n agenthub: {account.profile}\n baseline: {resp.json()}"
        )


def _expect(resp: httpx.Response, status: int) -> None:
    if resp.status_code != status:
        raise RuntimeError(
            f"{resp.request.method} {resp.request.url.path}: expected {status}, "
            f"got {resp.status_code}: {resp.text[:500]}"
        )


# --- load generators -----------------------------------------------------------------------

_DURATION = re.compile(r"^([\d.]+)(us|ms|s|m|h)$")
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(value: str) -> float:
    match = _DURATION.match(value)
    if match is None:
        raise ValueError(f"unexpected wrk duration {value!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def _wrk_number(pattern: str, output: str) -> str:
    match = re.search(pattern, output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"cannot parse wrk output ({pattern!r}):\n{output}")
    return match.group(1)


def parse_wrk(output: str) -> Load:
    """Requests/sec, the 50% and 99% latency lines (`--latency`) and the error counters."""
    errors = sum(
        int(n)
        for n in re.findall(
            r"(?:connect|read|write|timeout) (\d+)", _search(r"Socket errors:.*", output)
        )
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx is not None:
        errors += int(non_2xx.group(1))
    return Load(
        requests_per_s=float(_wrk_number(r"^Requests/sec:\s+([\d.]+)", output)),
        p50_ms=_ms(_wrk_number(r"^\s+50%\s+(\S+)", output)),
        p99_ms=_ms(_wrk_number(r"^\s+99%\s+(\S+)", output)),
        requests=int(_wrk_number(r"^\s+(\d+) requests in", output)),
        errors=errors,
    )


def _search(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    return match.group(0) if match else ""


def run_wrk(url: str, token: str, connections: int, duration: float) -> Load:
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "5s",
        "--latency",
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


async def _httpx_load(url: str, token: str, connections: int, duration: float) -> Load:
    """`connections` workers, each sending one request after another for `duration` s."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=5.0) as client:
        started = time.perf_counter()
        deadline = started + duration

        async def worker() -> None:
            nonlocal errors
            while (sent := time.perf_counter()) < deadline:
                try:
                    resp = await client.get(url)
                    ok = resp.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append((time.perf_counter() - sent) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return Load(
        requests_per_s=len(latencies) / elapsed,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        requests=len(latencies) + errors,
        errors=errors,
    )


def run_httpx(url: str, token: str, connections: int, duration: float) -> Load:
    return asyncio.run(_httpx_load(url, token, connections, duration))


# --- benchmark -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    connections: int
    generator: str  # "wrk" or "httpx"


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def measure(server: Server, token: str, opts: Options) -> Load:
    """A warm-up run (discarded), then the measured run and the server's CPU time during it."""
    url = server.base_url + PROFILE_PATH
    run = run_wrk if opts.generator == "wrk" else run_httpx
    if opts.warmup > 0:
        run(url, token, opts.connections, opts.warmup)
    process = psutil.Process(server.pid)
    cpu_before = _cpu_seconds(process)
    load = run(url, token, opts.connections, opts.duration)
    cpu = _cpu_seconds(process) - cpu_before
    return replace(load, cpu_ms_per_request=cpu * 1000 / max(load.requests, 1))


def bench_database(database_url: str, workdir: Path, opts: Options) -> dict[str, Load]:
    from agenthub.db import migrate

    migrate.upgrade(database_url)
    env = server_env(database_url, workdir)
    results: dict[str, Load] = {}
    with uvicorn_server("agenthub", AGENTHUB_TARGET, env, workdir) as server:
        account = set_up_account(server.base_url)
        results["agenthub"] = measure(server, account.token, opts)
    with uvicorn_server("baseline", BASELINE_TARGET, env, workdir) as server:
        check_same_profile(server.base_url, account)
        results["baseline"] = measure(server, account.token, opts)
    return results


@contextmanager
def sqlite_database() -> Iterator[tuple[str, Path]]:
    with tempfile.TemporaryDirectory(prefix="agenthub-bench-") as tmp:
        workdir = Path(tmp)
        yield f"sqlite+aiosqlite:///{workdir / 'bench.db'}", workdir


async def _pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def postgres_database() -> Iterator[tuple[str, Path]]:
    name = f"agenthub_bench_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="agenthub-bench-") as tmp:
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
        try:
            yield PG_URL.format(name=name), Path(tmp)
        finally:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def print_table(db: str, results: dict[str, Load], opts: Options, load_avg: float) -> None:
    print(
        f"\n{db}: GET {PROFILE_PATH}, {opts.connections} connections, {opts.duration:g} s after "
        f"{opts.warmup:g} s warm-up, generator {opts.generator}, load average before {load_avg:.2f}"
    )
    print(
        f"  {'server':<10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>11} "
        f"{'requests':>9} {'errors':>7}"
    )
    for server, load in results.items():
        print(
            f"  {server:<10} {load.requests_per_s:>9.1f} {load.p50_ms:>8.2f} {load.p99_ms:>8.2f} "
            f"{load.cpu_ms_per_request:>11.3f} {load.requests:>9} {load.errors:>7}"
        )
    ours, base = results["agenthub"], results["baseline"]
    print(
        f"  ratio (agenthub / baseline): {ours.requests_per_s / base.requests_per_s:.2f}x req/s, "
        f"{ours.cpu_ms_per_request / base.cpu_ms_per_request:.2f}x server CPU per request"
    )
    sys.stdout.flush()


def parse_args(argv: list[str] | None) -> tuple[list[str], Options]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per server")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per server")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "httpx"),
        default="auto",
        help="load generator (auto: wrk when installed, else asyncio + httpx)",
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.connections < 1 or args.warmup < 0:
        parser.error("--duration must be > 0, --connections >= 1, --warmup >= 0")
    generator: str = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "httpx"
    elif generator == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    return dbs, Options(args.duration, args.warmup, args.connections, generator)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(
        128 + signum
    )  # unwinds the `finally` blocks: servers stopped, database dropped


def main(argv: list[str] | None = None) -> int:
    dbs, opts = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    print(
        f"agenthub profile benchmark: python {platform.python_version()}, "
        f"uvicorn {version('uvicorn')}, fastapi {version('fastapi')}, "
        f"starlette {version('starlette')}, sqlalchemy {version('sqlalchemy')}, "
        f"{os.cpu_count()} CPUs"
    )
    if opts.generator == "wrk":
        print("load generator: wrk (-t1, --latency)")
    else:
        why = "forced" if shutil.which("wrk") else "wrk not installed"
        print(
            f"load generator: asyncio + httpx ({why}); it shares the CPUs with the servers, "
            "so throughput is bounded by the generator and the ratio understates the gap"
        )
    sys.stdout.flush()
    errors = 0
    for db in dbs:
        database = sqlite_database() if db == "sqlite" else postgres_database()
        load_avg = os.getloadavg()[0]
        with database as (url, workdir):
            results = bench_database(url, workdir, opts)
        print_table(db, results, opts, load_avg)
        errors += sum(load.errors for load in results.values())
    if errors:
        print(f"\n{errors} failed requests: the figures above are not trustworthy", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
