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
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from common import (
    AGENTHUB_TARGET,
    Load,
    Server,
    exit_on_sigterm,
    expect,
    measure_load,
    postgres_database,
    register_user,
    server_env,
    sqlite_database,
    uvicorn_server,
    versions_line,
)

PROFILE_PATH = "/v1/user/profile"
BASELINE_TARGET = "profile_baseline:create_app"


@dataclass(frozen=True)
class Account:
    """The benchmark user: its access token and the profile agenthub returned for it."""

    token: str
    profile: dict[str, Any]


# --- set-up --------------------------------------------------------------------------------


def set_up_account(base_url: str) -> Account:
    """Register, log in and create an API key through agenthub's HTTP API."""
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        token = register_user(client)
        headers = {"Authorization": f"Bearer {token}"}
        expect(client.post("/v1/user/api-keys", json={"name": "bench"}, headers=headers), 201)
        resp = client.get(PROFILE_PATH, headers=headers)
        expect(resp, 200)
        profile: dict[str, Any] = resp.json()
    if not profile["api_key_prefixes"]:
        raise RuntimeError("the profile lists no API key")
    return Account(token=token, profile=profile)


def check_same_profile(base_url: str, account: Account) -> None:
    """The baseline must return the JSON agenthub returned for the same token."""
    with httpx.Client(base_url=base_url, timeout=10.0) as client:
        resp = client.get(PROFILE_PATH, headers={"Authorization": f"Bearer {account.token}"})
    expect(resp, 200)
    if resp.json() != account.profile:
        raise RuntimeError(
            f"baseline JSON differs:\n agenthub: {account.profile}\n baseline: {resp.json()}"
        )


# --- benchmark -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    connections: int
    generator: str  # "wrk" or "httpx"


def measure(server: Server, token: str, opts: Options) -> Load:
    """A warm-up run (discarded), then the measured run and the server's CPU time during it."""
    url = server.base_url + PROFILE_PATH
    headers = {"Authorization": f"Bearer {token}"}
    return measure_load(
        server, url, headers, opts.generator, opts.connections, opts.duration, opts.warmup
    )


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


def main(argv: list[str] | None = None) -> int:
    dbs, opts = parse_args(argv)
    exit_on_sigterm()
    print(versions_line("agenthub profile benchmark"))
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
