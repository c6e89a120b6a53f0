"""Benchmark the cost of the login check on the authenticated request path.

Every request with an access token looks its user up joined with the token's login (is it
still active?). This script measures that against the lookup it replaced, the user by id alone
(`bench/logins_baseline.py`), on each database (a temp SQLite file; a fresh PostgreSQL database
on 127.0.0.1:5432, dropped at the end), in the same run:

- lookup: in this process, the query alone in its own unit of work (session, query, commit),
  as a request runs it: with the login check and without, alternating in rounds of
  `--lookups` calls (the first round is a warm-up); mean and p50/p99 per call, and the ratio.
- request: `GET /v1/user/profile` with a Bearer token against two uvicorn servers on the same
  database, agenthub and agenthub with the bare user lookup (`logins_baseline:create_app`),
  loaded alternately for `--duration` s in each of `--rounds` rounds (after a warm-up) by wrk,
  or by an asyncio + httpx generator when wrk is missing; requests/s, p50/p99 latency and the
  server's CPU time per request, and the ratios.

    .venv/bin/python bench/logins.py [--db sqlite|postgres|both] [--lookups 2000]
        [--rounds 3] [--duration 5] [--warmup 2] [--connections 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.config import Settings
from agenthub.core.security import decode_access_token
from agenthub.db.engine import Database
from agenthub.web import credentials
from agenthub.web.credentials import Credential
from common import (
    AGENTHUB_TARGET,
    BENCH_SECRET,
    Load,
    exit_on_sigterm,
    measure_load,
    percentile,
    postgres_database,
    register_user,
    run_main,
    server_env,
    sqlite_database,
    uvicorn_server,
    versions_line,
)
from logins_baseline import user_only

PROFILE_PATH = "/v1/user/profile"
BASELINE_TARGET = "logins_baseline:create_app"
CHECKED, BARE = "login check", "user only"
T = TypeVar("T")
Lookup = Callable[[AsyncSession, dict[str, Any]], Awaitable[Credential | None]]


def alternate(variants: dict[str, T], round_number: int) -> list[tuple[str, T]]:
    """The variants in one order on even rounds and the other on odd ones (ABBA), so neither
    always runs first."""
    items = list(variants.items())
    return items[::-1] if round_number % 2 else items


def sign_up(base_url: str) -> str:
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        return register_user(client)


# --- the lookup alone ----------------------------------------------------------------------


async def time_lookups(url: str, token: str, rounds: int, calls: int) -> dict[str, list[float]]:
    """Seconds per call of each lookup, alternating in rounds; the first round is dropped."""
    settings = Settings(_env_file=None, database_url=url)
    claims = decode_access_token(BENCH_SECRET, token)
    lookups: dict[str, Lookup] = {CHECKED: credentials.for_access_token, BARE: user_only}
    times: dict[str, list[float]] = {name: [] for name in lookups}
    database = Database(settings)
    try:
        for round_number in range(rounds + 1):
            for name, lookup in alternate(lookups, round_number):
                for _ in range(calls):
                    started = time.perf_counter()
                    async with database.transaction() as db:
                        found = await lookup(db, claims)
                    elapsed = time.perf_counter() - started
                    if found is None:
                        raise RuntimeError(f"{name}: the token's user was not found")
                    if round_number:
                        times[name].append(elapsed)
    finally:
        await database.dispose()
    return times


def print_lookups(db: str, times: dict[str, list[float]]) -> None:
    print(f"\n{db}: the lookup alone, {len(times[CHECKED])} calls each (unit of work included)")
    print(f"  {'lookup':<12} {'mean µs':>9} {'p50 µs':>9} {'p99 µs':>9}")
    means, medians = {}, {}
    for name, values in times.items():
        values.sort()
        means[name], medians[name] = statistics.fmean(values), percentile(values, 0.5)
        print(
            f"  {name:<12} {means[name] * 1e6:>9.1f} {medians[name] * 1e6:>9.1f} "
            f"{percentile(values, 0.99) * 1e6:>9.1f}"
        )
    print(
        f"  ratio (login check / user only): {means[CHECKED] / means[BARE]:.2f}x mean "
        f"({(means[CHECKED] - means[BARE]) * 1e6:+.1f} µs), "
        f"{medians[CHECKED] / medians[BARE]:.2f}x p50 "
        f"({(medians[CHECKED] - medians[BARE]) * 1e6:+.1f} µs)"
    )


# --- the whole request ---------------------------------------------------------------------


def time_requests(
    url: str, workdir: Path, token: str, args: argparse.Namespace
) -> dict[str, list[Load]]:
    """Both servers up at once, loaded one at a time, alternating round by round."""
    env = server_env(url, workdir)
    headers = {"Authorization": f"Bearer {token}"}
    loads: dict[str, list[Load]] = {CHECKED: [], BARE: []}
    with ExitStack() as stack:
        servers = {
            CHECKED: stack.enter_context(uvicorn_server("agenthub", AGENTHUB_TARGET, env, workdir)),
            BARE: stack.enter_context(uvicorn_server("baseline", BASELINE_TARGET, env, workdir)),
        }
        for round_number in range(args.rounds):
            for name, server in alternate(servers, round_number):
                warmup = args.warmup if round_number == 0 else 0.0
                load = measure_load(
                    server,
                    server.base_url + PROFILE_PATH,
                    headers,
                    args.generator,
                    args.connections,
                    args.duration,
                    warmup,
                )
                loads[name].append(load)
    return loads


def print_requests(db: str, loads: dict[str, list[Load]], args: argparse.Namespace) -> None:
    print(
        f"\n{db}: GET {PROFILE_PATH}, {args.connections} connections, {args.rounds} rounds of "
        f"{args.duration:g} s per server, generator {args.generator}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    columns = f"{'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu ms/req':>11} {'errors':>7}"
    print(f"  {'server':<12} {columns}")
    summary = {}
    for name, runs in loads.items():
        summary[name] = (
            statistics.fmean(load.requests_per_s for load in runs),
            statistics.median(load.p50_ms for load in runs),
            statistics.median(load.p99_ms for load in runs),
            statistics.fmean(load.cpu_ms_per_request for load in runs),
        )
        rps, p50, p99, cpu = summary[name]
        errors = sum(load.errors for load in runs)
        print(f"  {name:<12} {rps:>9.1f} {p50:>8.2f} {p99:>8.2f} {cpu:>11.3f} {errors:>7}")
    checked, bare = summary[CHECKED], summary[BARE]
    print(
        f"  ratio (login check / user only): {checked[0] / bare[0]:.2f}x req/s, "
        f"{checked[1] / bare[1]:.2f}x p50, {checked[3] / bare[3]:.2f}x server CPU per request"
    )


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--lookups", type=int, default=2000, help="lookup calls per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each measurement")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per server a round")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per server")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    args = parser.parse_args(argv)
    if min(args.lookups, args.rounds, args.connections) < 1 or args.duration <= 0:
        parser.error("--lookups, --rounds, --connections must be >= 1 and --duration > 0")
    args.generator = "wrk" if shutil.which("wrk") else "httpx"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    exit_on_sigterm()
    print(versions_line("agenthub login-check benchmark"))
    print(f"load generator: {args.generator}")
    errors = 0
    for db in ("sqlite", "postgres") if args.db == "both" else (args.db,):
        database = sqlite_database() if db == "sqlite" else postgres_database()
        with database as (url, workdir):
            from agenthub.db import migrate

            migrate.upgrade(url)
            env = server_env(url, workdir, AGENTHUB_ACCESS_TOKEN_MINUTES="240")
            with uvicorn_server("setup", AGENTHUB_TARGET, env, workdir) as server:
                token = sign_up(server.base_url)
            print_lookups(db, asyncio.run(time_lookups(url, token, args.rounds, args.lookups)))
            loads = time_requests(url, workdir, token, args)
            print_requests(db, loads, args)
            errors += sum(load.errors for runs in loads.values() for load in runs)
        sys.stdout.flush()
    return 1 if errors else 0


if __name__ == "__main__":
    run_main(main)
