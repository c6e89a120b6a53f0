"""Helpers shared by the benchmarks in `bench/` (import as `from common import ...`).

Real uvicorn servers on free loopback ports, a fresh database per run (a temp SQLite file or a
PostgreSQL database dropped at the end), a user registered through the HTTP API, the baselines'
access-token check, `wrk` output parsing, percentiles, and a SIGTERM handler that unwinds the
`finally` blocks.
"""

from __future__ import annotations

import asyncio
import math
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import NoReturn

import httpx
import jwt
import psutil

BENCH_DIR = Path(__file__).resolve().parent
BENCH_SECRET = "agenthub-bench-secret-0f6c2b1e9d4a4c7b8e3f5a6d7c8b9a0e"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/{name}"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
AGENTHUB_TARGET = "agenthub.app:create_app"
# Identical for every server a benchmark starts; uvloop and httptools come with uvicorn[standard].
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


# --- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_env(database_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a server process: no inherited `AGENTHUB_*`, then these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")}
    env.update(
        AGENTHUB_DATABASE_URL=database_url,
        AGENTHUB_SECRET_KEY=BENCH_SECRET,
        AGENTHUB_SECRET_FILE=str(workdir / "secret"),
        AGENTHUB_FILES_DIR=str(workdir / "files"),
        AGENTHUB_LOG_LEVEL="WARNING",
        AGENTHUB_LOG_FORMAT="json",
        AGENTHUB_AUTO_MIGRATE="false",
        # Every benchmark client comes from one address: no rate limits, as for the baselines.
        AGENTHUB_RATE_LIMIT_ENABLED="false",
    )
    env.update(extra)
    return env


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def uvicorn_server(name: str, target: str, env: dict[str, str], workdir: Path) -> Iterator[Server]:
    """Run `target` in a uvicorn process on a free loopback port; stop it on the way out."""
    port = free_port()
    log_path = workdir / f"{name}.log"
    cmd = [sys.executable, "-m", "uvicorn", target, *UVICORN_OPTIONS, "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, base_url, log_path)
        yield Server(base_url, proc.pid)
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns once it has exited."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    """Until the server answers HTTP at all (any status); fail early if it exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {proc.returncode} at start:\n{log_tail(log_path)}"
                )
            try:
                client.get("/")
                return
            except httpx.TransportError:
                time.sleep(0.1)
    raise RuntimeError(f"server not ready after {STARTUP_TIMEOUT_S:.0f} s:\n{log_tail(log_path)}")


# --- set-up --------------------------------------------------------------------------------


def register_user(client: httpx.Client) -> str:
    """Register a fresh user through the HTTP API, log in, and return the access token."""
    email = f"bench-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(18)
    resp = client.post(
        "/v1/auth/register", json={"email": email, "password": password, "username": "bench"}
    )
    expect(resp, 201)
    resp = client.post("/v1/auth/login", json={"email": email, "password": password})
    expect(resp, 200)
    token: str = resp.json()["access_token"]
    return token


def expect(resp: httpx.Response, status: int) -> None:
    if resp.status_code != status:
        raise RuntimeError(
            f"{resp.request.method} {resp.request.url.path}: expected {status}, "
            f"got {resp.status_code}: {resp.text[:500]}"
        )


# --- databases -----------------------------------------------------------------------------


@contextmanager
def sqlite_database() -> Iterator[tuple[str, Path]]:
    """A temp SQLite file URL and a work directory, both removed on the way out."""
    with tempfile.TemporaryDirectory(prefix="agenthub-bench-") as tmp:
        workdir = Path(tmp)
        yield f"sqlite+aiosqlite:///{workdir / 'bench.db'}", workdir


async def pg_admin(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def postgres_database() -> Iterator[tuple[str, Path]]:
    """A fresh PostgreSQL database (its SQLAlchemy URL) and a work directory.

    The database is dropped on the way out, even with clients still connected; use
    `pg_dsn(url)` for a plain asyncpg DSN of the same database.
    """
    name = f"agenthub_bench_{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="agenthub-bench-") as tmp:
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
        try:
            yield PG_URL.format(name=name), Path(tmp)
        finally:
            asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def pg_dsn(database_url: str) -> str:
    """The asyncpg DSN of a SQLAlchemy `postgresql+asyncpg://` URL."""
    return database_url.replace("postgresql+asyncpg://", "postgresql://", 1)


# --- baselines -----------------------------------------------------------------------------


def access_token_ids(authorization: str, secret: str) -> tuple[str, str] | None:
    """The user and login ids of the bearer access token in an `Authorization` header, checked
    as agenthub checks it (HS256, the same required claims, `typ` = `access`); else None."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["sub", "sid", "exp", "iat", "typ"]},
        )
    except jwt.PyJWTError:
        return None
    user_id, login_id = claims["sub"], claims["sid"]
    if claims["typ"] != "access" or not isinstance(user_id, str) or not isinstance(login_id, str):
        return None
    return user_id, login_id


# --- wrk -----------------------------------------------------------------------------------

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


def _search(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    return match.group(0) if match else ""


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


def run_wrk(
    url: str,
    connections: int,
    duration: float,
    *,
    headers: Mapping[str, str] | None = None,
    script: Path | None = None,
) -> Load:
    """One wrk thread with `connections` connections for `duration` s (whole seconds)."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s"]
    cmd += ["--timeout", "5s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    if script is not None:
        cmd += ["-s", str(script)]
    cmd.append(url)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# --- load ----------------------------------------------------------------------------------


async def _httpx_load(
    url: str, connections: int, duration: float, headers: Mapping[str, str]
) -> Load:
    """`connections` workers, each sending one GET after another for `duration` s."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, headers=dict(headers), timeout=5.0) as client:
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
    return load_of(latencies, errors, elapsed)


def load_of(latencies_ms: list[float], errors: int, elapsed: float) -> Load:
    """The `Load` of a run: successful requests' latencies, failures and its duration."""
    latencies_ms.sort()
    return Load(
        requests_per_s=len(latencies_ms) / elapsed,
        p50_ms=percentile(latencies_ms, 0.50),
        p99_ms=percentile(latencies_ms, 0.99),
        requests=len(latencies_ms) + errors,
        errors=errors,
    )


def run_httpx(
    url: str, connections: int, duration: float, *, headers: Mapping[str, str] | None = None
) -> Load:
    """An asyncio + httpx load generator (when wrk is not installed); it shares the CPUs with
    the server."""
    return asyncio.run(_httpx_load(url, connections, duration, headers or {}))


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure_load(
    server: Server,
    url: str,
    headers: Mapping[str, str],
    generator: str,
    connections: int,
    duration: float,
    warmup: float = 0.0,
) -> Load:
    """GET `url` with `generator` ("wrk" or "httpx"): a warm-up run (discarded), then the
    measured run and the server process's CPU time per request during it."""
    run = run_wrk if generator == "wrk" else run_httpx
    if warmup > 0:
        run(url, connections, warmup, headers=headers)
    before = cpu_seconds(server.pid)
    load = run(url, connections, duration, headers=headers)
    cpu = cpu_seconds(server.pid) - before
    return replace(load, cpu_ms_per_request=cpu * 1000 / max(load.requests, 1))


# --- reporting and signals -----------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..1) of already sorted values; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def versions_line(title: str) -> str:
    return (
        f"{title}: python {platform.python_version()}, uvicorn {version('uvicorn')}, "
        f"fastapi {version('fastapi')}, starlette {version('starlette')}, "
        f"sqlalchemy {version('sqlalchemy')}, asyncpg {version('asyncpg')}, "
        f"{os.cpu_count()} CPUs"
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # Unwinds the `finally` blocks: servers stopped, database dropped.
    raise SystemExit(128 + signum)


def run_main(main: Callable[[], int]) -> NoReturn:
    """`sys.exit(main())`; Ctrl-C exits 130 once the `finally` blocks have stopped the servers
    and dropped the databases."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)


def exit_on_sigterm() -> None:
    """Make SIGTERM behave like Ctrl-C for clean-up: it raises `SystemExit`."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
