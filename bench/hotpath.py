"""Benchmark a chat's hot path under load: agenthub against the raw stack doing the same work.

For each database (a migrated temp SQLite file; a fresh PostgreSQL database on 127.0.0.1:5432,
dropped at the end) the script starts agenthub under uvicorn with rate limits on but raised far
above the load, sets up `--users` users through its HTTP API (register, log in, one session
seeded with 21 messages), and loads it from a process of its own (`bench/hotpath_load.py`) with
the mix 50 % append a message / 40 % latest page of 20 / 10 % get the session:

- open loop: `--rate` requests/s offered over all users, each user on its own connection;
  latency counts from the planned send time, so a server that falls behind is not excused;
- closed loop: `--clients` connections sending back to back (optionally under py-spy, for
  agenthub: `--profile DIR`);
- login burst (agenthub only, `--logins`, 0 skips it): one user reads its latest page in a loop
  while that many other users log in at once, each on a new connection.

Then agenthub stops and the baseline (`bench/hotpath_baseline.py`: Starlette, stdlib sqlite3 or
asyncpg, PyJWT) answers the same modes on the same database with the same tokens, after a check
that its answers match agenthub's. Printed per database: requests/s, p50/p95/p99/max latency,
errors, the server process's CPU time per request and the load average as each run starts; per
operation p50/p95/p99; the ratios agenthub / baseline; the burst's logins by outcome and the
reader's latency. Exit status 1 when any request failed (a 503 with `Retry-After` is an allowed
answer to a login in the burst).

    .venv/bin/python bench/hotpath.py [--db sqlite|postgres|both] [--mode open|closed|both]
        [--users 100] [--rate 200] [--clients 50] [--duration 15] [--warmup 3] [--logins 50]
        [--profile DIR] [--smoke] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from common import (
    AGENTHUB_TARGET,
    BENCH_DIR,
    Server,
    exit_on_sigterm,
    expect,
    postgres_database,
    run_main,
    server_env,
    sqlite_database,
    uvicorn_server,
    versions_line,
)
from hotpath_load import DRAIN_S, LOGIN_TIMEOUT_S

BASELINE_TARGETS = {
    "sqlite": "hotpath_baseline:create_sqlite_app",
    "postgres": "hotpath_baseline:create_postgres_app",
}
# agenthub's settings: rate limits on (their cost is part of the path) but far above the load.
SETTINGS = {
    "AGENTHUB_RATE_LIMIT_ENABLED": "true",
    "AGENTHUB_RATE_LIMIT_USER": "1000000/minute",
    "AGENTHUB_RATE_LIMIT_IP": "1000000/minute",
    "AGENTHUB_LOGIN_LIMIT_IP": "1000000/minute",
    "AGENTHUB_LOGIN_LIMIT_ACCOUNT": "1000000/minute",
    "AGENTHUB_ACCESS_TOKEN_MINUTES": "1440",  # the set-up's tokens outlive any run
}
SERVERS = ("agenthub", "baseline")
SEED_MESSAGES = 21  # a full page of 20, and more
SETUP_AT_ONCE = 8
SMOKE = {"duration": 0.5, "warmup": 0.2, "users": 20, "clients": 10, "logins": 5, "rate": 50.0}
# The smoke run checks for errors, not figures: it hashes passwords cheaply, as the tests do.
SMOKE_ENV = {"AGENTHUB_PASSWORD_TIME_COST": "1", "AGENTHUB_PASSWORD_MEMORY_KIB": "1024"}
PROCESS_SLACK_S = 60.0


@dataclass(frozen=True)
class Options:
    dbs: list[str]
    modes: list[str]
    users: int
    rate: float
    clients: int
    duration: float
    warmup: float
    logins: int
    profile: Path | None
    json_path: Path | None
    env: dict[str, str]  # on top of `SETTINGS`


@dataclass(frozen=True)
class Account:
    email: str
    password: str
    token: str
    session_id: str

    def user(self) -> dict[str, str]:
        return {"token": self.token, "session_id": self.session_id}


@dataclass
class Results:
    """One database's runs (`hotpath_load.py` reports, with the server and load average)."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    burst: dict[str, Any] | None = None
    logs: dict[str, list[str]] = field(default_factory=dict)  # servers' errors, on failure

    def failures(self) -> list[str]:
        """What went wrong, one line per run; empty when every request succeeded."""
        bad = [
            f"{run['server']} {run['mode']}: {run['errors']}" for run in self.runs if run["errors"]
        ]
        if self.burst is not None:
            if self.burst["other"]:
                bad.append(f"login burst, logins: {self.burst['other']}")
            if self.burst["reader"]["errors"]:
                bad.append(f"login burst, reader: {self.burst['reader']['errors']}")
        return bad


# --- set-up --------------------------------------------------------------------------------


async def set_up_account(client: httpx.AsyncClient, number: int) -> Account:
    """Register and log in a user, and give it a session with `SEED_MESSAGES` messages."""
    email = f"hot-{number}-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(18)
    credentials = {"email": email, "password": password}
    expect(await client.post("/v1/auth/register", json=credentials), 201)
    resp = await client.post("/v1/auth/login", json=credentials)
    expect(resp, 200)
    token: str = resp.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    resp = await client.post("/v1/sessions", json={"agent_type": "assistant"}, headers=headers)
    expect(resp, 201)
    session_id: str = resp.json()["session"]["id"]
    for n in range(SEED_MESSAGES):
        message = {"role": ("user", "assistant")[n % 2], "content": f"seed message {n}"}
        path = f"/v1/sessions/{session_id}/messages"
        expect(await client.post(path, json=message, headers=headers), 201)
    return Account(email, password, token, session_id)


async def set_up_accounts(base_url: str, users: int) -> list[Account]:
    gate = asyncio.Semaphore(SETUP_AT_ONCE)
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as client:

        async def one(number: int) -> Account:
            async with gate:
                return await set_up_account(client, number)

        return list(await asyncio.gather(*(one(n) for n in range(users))))


# --- same answers --------------------------------------------------------------------------


def _comparable(value: Any) -> Any:
    """JSON with its `*_at` times parsed: equal times compare equal however they are written."""
    if isinstance(value, dict):
        return {
            key: datetime.fromisoformat(item)
            if key.endswith("_at") and isinstance(item, str)
            else _comparable(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_comparable(item) for item in value]
    return value


def _answers(base_url: str, account: Account, *, append_first: bool) -> dict[str, Any]:
    """The three operations' answers for `account`; the append first or last."""
    base = f"/v1/sessions/{account.session_id}"
    message = {"role": "user", "content": "same answers?"}
    answers: dict[str, Any] = {}
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        client.headers["Authorization"] = f"Bearer {account.token}"

        def append() -> None:
            resp = client.post(f"{base}/messages", json=message)
            expect(resp, 201)
            answers["append"] = resp.json()

        if append_first:
            append()
        resp = client.get(f"{base}/messages", params={"order": "desc", "limit": 20})
        expect(resp, 200)
        answers["page"] = resp.json()
        resp = client.get(base)
        expect(resp, 200)
        answers["session"] = resp.json()
        if not append_first:
            append()
    return answers


def check_same_answers(expected: dict[str, Any], actual: dict[str, Any]) -> None:
    """The baseline's page and session equal agenthub's (read with no write in between); its
    new message has the same fields, role, content and session."""
    problems = [
        op for op in ("page", "session") if _comparable(expected[op]) != _comparable(actual[op])
    ]
    ours, theirs = expected["append"], actual["append"]
    same = ("role", "content", "session_id")
    if ours.keys() != theirs.keys() or any(ours[key] != theirs[key] for key in same):
        problems.append("append")
    else:
        datetime.fromisoformat(theirs["created_at"])
    if problems:
        raise RuntimeError(
            f"the baseline answers {', '.join(problems)} unlike agenthub:\n"
            + "\n".join(
                f" {op}:\n  agenthub: {expected[op]}\n  baseline: {actual[op]}" for op in problems
            )
        )


# --- load ----------------------------------------------------------------------------------


@contextmanager
def flame_graph(svg: Path | None, pid: int, log: Path) -> Iterator[None]:
    """`py-spy record` of `pid` into `svg` while the block runs (nothing when `svg` is None)."""
    if svg is None:
        yield
        return
    cmd = ["py-spy", "record", "-o", str(svg), "--pid", str(pid), "--nonblocking"]
    with log.open("ab") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes the graph when interrupted
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_load(plan: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """`hotpath_load.py` on `plan` in its own process; its JSON report."""
    path = workdir / "plan.json"
    path.write_text(json.dumps(plan))
    if plan["mode"] == "burst":
        limit = plan["warmup"] + LOGIN_TIMEOUT_S
    else:
        limit = plan["warmup"] + plan["duration"] + max(DRAIN_S, 2 * plan["duration"])
    done = subprocess.run(
        [sys.executable, str(BENCH_DIR / "hotpath_load.py"), str(path)],
        capture_output=True,
        text=True,
        timeout=limit + PROCESS_SLACK_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}):\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def measure(
    server: Server,
    name: str,
    mode: str,
    accounts: list[Account],
    opts: Options,
    workdir: Path,
    svg: Path | None = None,
) -> dict[str, Any]:
    """One measured run of `mode` (after its warm-up), under py-spy when `svg` is given."""
    plan = {
        "base_url": server.base_url,
        "mode": mode,
        "users": [account.user() for account in accounts],
        "duration": opts.duration,
        "warmup": opts.warmup,
        "clients": opts.clients,
        "rate": opts.rate,
        "server_pid": server.pid,
    }
    load_avg = os.getloadavg()[0]
    with flame_graph(svg, server.pid, workdir / "py-spy.log"):
        report = run_load(plan, workdir)
    return {"server": name, "load_avg": load_avg, **report}


def login_burst(
    server: Server, accounts: list[Account], opts: Options, workdir: Path
) -> dict[str, Any]:
    plan = {
        "base_url": server.base_url,
        "mode": "burst",
        "users": [accounts[0].user()],
        "logins": [
            {"email": a.email, "password": a.password} for a in accounts[1 : opts.logins + 1]
        ],
        "warmup": opts.warmup,
    }
    load_avg = os.getloadavg()[0]
    return {"load_avg": load_avg, **run_load(plan, workdir)}


def bench_database(db: str, database_url: str, workdir: Path, opts: Options) -> Results:
    from agenthub.db import migrate

    migrate.upgrade(database_url)
    env = server_env(database_url, workdir, **SETTINGS, **opts.env)
    results = Results()
    with uvicorn_server("agenthub", AGENTHUB_TARGET, env, workdir) as server:
        accounts = asyncio.run(set_up_accounts(server.base_url, opts.users))
        for mode in opts.modes:
            svg = opts.profile / f"{db}-{mode}.svg" if opts.profile and mode == "closed" else None
            results.runs.append(measure(server, "agenthub", mode, accounts, opts, workdir, svg))
        if opts.logins:
            results.burst = login_burst(server, accounts, opts, workdir)
        expected = _answers(server.base_url, accounts[0], append_first=True)
    with uvicorn_server("baseline", BASELINE_TARGETS[db], env, workdir) as server:
        check_same_answers(expected, _answers(server.base_url, accounts[0], append_first=False))
        for mode in opts.modes:
            results.runs.append(measure(server, "baseline", mode, accounts, opts, workdir))
    if results.failures():
        results.logs = {name: logged_errors(workdir / f"{name}.log") for name in SERVERS}
    return results


def logged_errors(path: Path) -> list[str]:
    """A line per error a server logged: agenthub's JSON lines at level error or above or
    naming an error type (a 503 for a busy database is a warning), in short, and any line that
    is not JSON (uvicorn's own, tracebacks)."""
    lines = []
    for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
        try:
            entry = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if not isinstance(entry, dict):
            continue
        if entry.get("level") in ("error", "critical") or "error_type" in entry:
            cause = (entry.get("exception") or "").strip().rpartition("\n")[2]
            lines.append(
                f"{entry.get('level')} {entry.get('event')} {entry.get('error_type', '')} "
                f"{entry.get('path', '')}: {cause}"
            )
    return lines


# --- report --------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 1000 else f"{value:.1f}" if value >= 100 else f"{value:.2f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours is not None and theirs else "-"


def print_results(db: str, results: Results, opts: Options) -> None:
    print(
        f"\n{db}: {opts.users} users, one session each; mix 50 % append / 40 % latest page of "
        f"20 / 10 % get session; open loop {opts.rate:g} req/s offered, closed loop "
        f"{opts.clients} clients; {opts.duration:g} s after {opts.warmup:g} s warm-up"
    )
    print(
        f"  {'server':<9} {'mode':<6} {'load':>5} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'p99 ms':>8} {'max ms':>8} {'requests':>9} {'errors':>7} {'cpu ms/req':>11}"
    )
    for run in results.runs:
        cpu = run["cpu_ms_per_request"]
        print(
            f"  {run['server']:<9} {run['mode']:<6} {run['load_avg']:>5.2f} "
            f"{run['requests_per_s']:>8.1f} {_ms(run['p50_ms']):>8} {_ms(run['p95_ms']):>8} "
            f"{_ms(run['p99_ms']):>8} {_ms(run['max_ms']):>8} "
            f"{run['completed'] + run['error_count']:>9} {run['error_count']:>7} "
            f"{'-' if cpu is None else f'{cpu:.3f}':>11}"
        )
    print("  p50 / p95 / p99 ms by operation:")
    for run in results.runs:
        cells = [
            f"{op} {_ms(f['p50_ms'])} / {_ms(f['p95_ms'])} / {_ms(f['p99_ms'])}"
            for op, f in run["operations"].items()
        ]
        print(f"  {run['server']:<9} {run['mode']:<6} " + "; ".join(cells))
    by_key = {(run["server"], run["mode"]): run for run in results.runs}
    for mode in opts.modes:
        ours, theirs = by_key[("agenthub", mode)], by_key[("baseline", mode)]
        print(
            f"  ratio agenthub / baseline, {mode} loop: "
            f"{_ratio(ours['requests_per_s'], theirs['requests_per_s'])} req/s, "
            f"{_ratio(ours['cpu_ms_per_request'], theirs['cpu_ms_per_request'])} "
            "server CPU per request"
        )
    if (burst := results.burst) is not None:
        reader = burst["reader"]
        print(
            f"  login burst (agenthub, load {burst['load_avg']:.2f}): {burst['logins']} logins "
            f"at once: {burst['ok']} ok, {burst['unavailable']} 503 + Retry-After, other "
            f"{burst['other'] or 'none'}; login p50 {_ms(burst['login_p50_ms'])} ms, max "
            f"{_ms(burst['login_max_ms'])} ms; one user reading meanwhile: "
            f"{reader['completed']} reads, p50 {_ms(reader['p50_ms'])} ms, "
            f"p95 {_ms(reader['p95_ms'])} ms, max {_ms(reader['max_ms'])} ms, "
            f"{reader['error_count']} errors"
        )
    for failure in results.failures():
        print(f"  errors: {failure}")
    for name, errors in results.logs.items():
        if errors:
            shown = "\n".join(f"    {n} x {line[:400]}" for line, n in Counter(errors).items())
            print(f"  {name} logged {len(errors)} errors:\n{shown}")
    sys.stdout.flush()


# --- command line --------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--mode", choices=("open", "closed", "both"), default="both")
    parser.add_argument("--users", type=int, default=100, help="users, a session each")
    parser.add_argument("--rate", type=float, default=200.0, help="open loop: requests/s")
    parser.add_argument("--clients", type=int, default=50, help="closed loop: connections")
    parser.add_argument("--duration", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds per run")
    parser.add_argument(
        "--logins", type=int, default=50, help="login burst: logins at once (0: no burst)"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy flame graphs of agenthub's closed loops here"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="a short run with cheap password hashing: "
        + ", ".join(f"--{name} {value:g}" for name, value in SMOKE.items()),
    )
    parser.add_argument("--json", type=Path, dest="json_path", help="write the results here")
    args = parser.parse_args(argv)
    if args.smoke:  # its figures, unless given on the command line
        parser.set_defaults(**SMOKE)
        args = parser.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.rate <= 0 or args.clients < 1:
        parser.error("--duration and --rate must be > 0, --warmup >= 0, --clients >= 1")
    if not 0 <= args.logins < args.users:
        parser.error("--logins must be at least 0 and below --users (one user keeps reading)")
    profile: Path | None = args.profile
    if profile is not None:
        if shutil.which("py-spy") is None:
            print("note: py-spy is not installed (pip install py-spy): no flame graphs")
            profile = None
        else:
            profile.mkdir(parents=True, exist_ok=True)
    return Options(
        dbs=["sqlite", "postgres"] if args.db == "both" else [args.db],
        modes=["open", "closed"] if args.mode == "both" else [args.mode],
        users=args.users,
        rate=args.rate,
        clients=args.clients,
        duration=args.duration,
        warmup=args.warmup,
        logins=args.logins,
        profile=profile,
        json_path=args.json_path,
        env=SMOKE_ENV if args.smoke else {},
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    exit_on_sigterm()
    print(versions_line("agenthub hot-path benchmark"))
    sys.stdout.flush()
    report: dict[str, Any] = {}
    failures: list[str] = []
    for db in opts.dbs:
        database = sqlite_database() if db == "sqlite" else postgres_database()
        with database as (url, workdir):
            results = bench_database(db, url, workdir, opts)
        print_results(db, results, opts)
        report[db] = {"runs": results.runs, "login_burst": results.burst}
        failures += [f"{db}: {failure}" for failure in results.failures()]
    if opts.json_path is not None:
        opts.json_path.write_text(json.dumps({"databases": report, "failures": failures}))
    if failures:
        print(f"\n{len(failures)} runs with failed requests", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    run_main(main)
