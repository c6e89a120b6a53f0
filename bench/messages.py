"""Benchmark the message list and append of one session with 1,000,000 messages on PostgreSQL.

On a fresh PostgreSQL database (dropped at the end), the script starts agenthub under uvicorn
(one worker), registers a user and creates a session through the HTTP API, then bulk-inserts
the messages straight into `messages` with asyncpg `copy_records_to_table` (time-ordered ids,
one second apart), sets the session's counters and runs VACUUM ANALYZE. Then:

1. Message-list latency, one request at a time over one keep-alive connection: the first page,
   the newest page, a page deep in the history by cursor (`after=` and `before=` the id 90 %
   in) and by `offset=`. Each agenthub request is followed by the same SQL run directly with
   asyncpg (the raw-driver baseline), so both see the same machine state. Printed per case:
   p50/p99 of the server-side time (`X-Process-Time`), of the end-to-end time measured by the
   client, and of the raw query; the ratios agenthub / raw and deep cursor / first page.
2. `EXPLAIN (ANALYZE, BUFFERS)` of the deep cursor query and of the offset query.
3. Message-append throughput: `wrk` POSTing messages with N connections for D seconds, then
   the baseline: the same INSERT + `UPDATE sessions SET message_count = message_count + 1 ...`
   transaction through an asyncpg pool of N connections for D seconds; then a check that the
   session's `message_count` equals the number of its rows.

    .venv/bin/python bench/messages.py [--messages 1000000] [--requests 200] [--duration 10]
        [--connections 16] [--warmup 2] [--warmup-requests 20] [--case-seconds 20]
"""

# ruff: noqa: S608 - the SQL is built from the module's constant column lists and clauses.
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil

from agenthub.core.ids import new_id
from common import (
    AGENTHUB_TARGET,
    Load,
    Server,
    exit_on_sigterm,
    expect,
    load_of,
    percentile,
    pg_dsn,
    postgres_database,
    register_user,
    run_main,
    run_wrk,
    server_env,
    uvicorn_server,
    versions_line,
)

STEP_MS = 1000  # seeded messages are one second apart
CHUNK = 50_000  # records per COPY
PAGE = 50
DEEP_FRACTION = 0.9
COLUMNS = (
    "id, session_id, role, content, metadata, prompt_tokens, completion_tokens, created_at, user_id"
)
COPY_COLUMNS = (
    "id",
    "session_id",
    "role",
    "content",
    "metadata",
    "prompt_tokens",
    "completion_tokens",
    "created_at",
    "user_id",
)
# What agenthub's list query selects (the ORM's columns of `Message`), for the raw baseline.
LIST_SQL = f"SELECT {COLUMNS} FROM messages WHERE session_id = $1{{where}} ORDER BY id {{order}}"
# The append transaction as agenthub's service issues it (insert, then the counters update).
INSERT_SQL = f"INSERT INTO messages ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
UPDATE_SQL = (
    "UPDATE sessions SET message_count = message_count + 1, "
    "prompt_tokens = prompt_tokens + $2, completion_tokens = completion_tokens + $3, "
    "last_activity_at = CASE WHEN last_activity_at > $4 THEN last_activity_at ELSE $4 END, "
    "archived_at = NULL, updated_at = $4 WHERE id = $1 "
    "RETURNING id, agent_id, agent_type, project_id, title, metadata, message_count, "
    "prompt_tokens, completion_tokens, last_activity_at, archived_at, deleted_at, user_id, "
    "created_at, updated_at"
)
APPEND_CONTENT = "Please run the test suite again and summarize what failed, with file names."
APPEND_PROMPT_TOKENS = 17
MIN_REQUESTS = 20  # per latency case, even past --case-seconds

_VOCABULARY = (
    "the agent ran tests on branch main and found two failures in the parser module so it "
    "opened a pull request with a fix updated the docs and asked for a review before merging "
    "please check the logs of the worker process the queue looks slow since yesterday and "
    "the dashboard shows retries on three jobs we should add an index on session id and "
    "measure again with one million rows before we ship the release candidate to staging"
).split()


# --- seeding -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    count: int
    copy_s: float  # ids, records and COPY, overlapped
    vacuum_s: float
    deep_index: int
    deep_id: str
    avg_content_bytes: float
    size: str  # messages: table, TOAST and indexes


def _bodies() -> list[str]:
    """64 message texts of 3..50 words (user turns short, assistant turns longer)."""
    words = itertools.cycle(_VOCABULARY)
    bodies = []
    for k in range(64):
        length = 3 + (k * 7) % 18 if k % 2 == 0 else 10 + (k * 13) % 41
        bodies.append(" ".join(next(words) for _ in range(length)))
    return bodies


def _chunk(
    start: int, stop: int, first_ms: int, user_id: str, session_id: str, bodies: list[str]
) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(start, stop):
        at_ms = first_ms + i * STEP_MS
        user_turn = i % 2 == 0
        rows.append(
            (
                new_id("msg", at_ms=at_ms),
                session_id,
                "user" if user_turn else "assistant",
                f"{bodies[i % len(bodies)]} #{i}",
                "{}",
                0 if user_turn else 20 + i % 200,
                0 if user_turn else 40 + i % 400,
                datetime.fromtimestamp(at_ms / 1000, UTC),
                user_id,
            )
        )
    return rows


async def seed(dsn: str, user_id: str, session_id: str, count: int) -> Seeded:
    """COPY `count` time-ordered messages into the session, set its counters, VACUUM ANALYZE.

    The next chunk of records is built in a thread while the previous one is copied. The
    session's counters are set as the API would have kept them. VACUUM (not only ANALYZE):
    after a million inserts autovacuum would do it anyway, so it runs now rather than in the
    middle of a measurement (and the visibility map is as a long-lived table's would be).
    """
    bodies = _bodies()
    first_ms = int(time.time() * 1000) - (count + 3600) * STEP_MS
    deep_index = int(count * DEEP_FRACTION)
    deep_id = ""
    content_bytes = 0
    conn = await asyncpg.connect(dsn)
    try:
        started = time.perf_counter()
        bounds = [(a, min(a + CHUNK, count)) for a in range(0, count, CHUNK)]
        pending = asyncio.create_task(
            asyncio.to_thread(_chunk, *bounds[0], first_ms, user_id, session_id, bodies)
        )
        for n, (a, b) in enumerate(bounds):
            records = await pending
            if n + 1 < len(bounds):
                pending = asyncio.create_task(
                    asyncio.to_thread(_chunk, *bounds[n + 1], first_ms, user_id, session_id, bodies)
                )
            if a <= deep_index < b:
                deep_id = records[deep_index - a][0]
            content_bytes += sum(len(r[3]) for r in records)
            await conn.copy_records_to_table("messages", records=records, columns=COPY_COLUMNS)
        last_at = datetime.fromtimestamp((first_ms + (count - 1) * STEP_MS) / 1000, UTC)
        await conn.execute(
            "UPDATE sessions SET message_count = m.n, prompt_tokens = m.p, "
            "completion_tokens = m.c, last_activity_at = $2, updated_at = now() "
            "FROM (SELECT count(*) AS n, coalesce(sum(prompt_tokens), 0) AS p, "
            "coalesce(sum(completion_tokens), 0) AS c FROM messages WHERE session_id = $1) AS m "
            "WHERE sessions.id = $1",
            session_id,
            last_at,
        )
        copied = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) messages")
        await conn.execute("VACUUM (ANALYZE) sessions")
        vacuumed = time.perf_counter()
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('messages'))")
    finally:
        await conn.close()
    return Seeded(
        count=count,
        copy_s=copied - started,
        vacuum_s=vacuumed - copied,
        deep_index=deep_index,
        deep_id=deep_id,
        avg_content_bytes=content_bytes / max(count, 1),
        size=str(size),
    )


# --- list latency --------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One list request and the SQL agenthub runs for it (`limit + 1` rows: has_more)."""

    kind: str  # first, newest, after, before, offset
    label: str
    query: str
    sql: str
    args: tuple[Any, ...]
    backwards: bool = False  # `before=`: the SQL scans descending, the API answers ascending


@dataclass(frozen=True)
class Timing:
    server_ms: list[float]
    e2e_ms: list[float]
    raw_ms: list[float]

    @property
    def n(self) -> int:
        return len(self.server_ms)


def cases(session_id: str, seeded: Seeded) -> list[Case]:
    limit = PAGE + 1
    after = LIST_SQL.format(where=" AND id > $2", order="ASC") + " LIMIT $3"
    before = LIST_SQL.format(where=" AND id < $2", order="DESC") + " LIMIT $3"
    deep = f"{seeded.deep_index:,}"
    return [
        Case(
            "first",
            "first page",
            f"limit={PAGE}",
            LIST_SQL.format(where="", order="ASC") + " LIMIT $2",
            (session_id, limit),
        ),
        Case(
            "newest",
            "newest (order=desc)",
            f"limit={PAGE}&order=desc",
            LIST_SQL.format(where="", order="DESC") + " LIMIT $2",
            (session_id, limit),
        ),
        Case(
            "after",
            f"after= #{deep}",
            f"limit={PAGE}&after={seeded.deep_id}",
            after,
            (session_id, seeded.deep_id, limit),
        ),
        Case(
            "before",
            f"before= #{deep}",
            f"limit={PAGE}&before={seeded.deep_id}",
            before,
            (session_id, seeded.deep_id, limit),
            backwards=True,
        ),
        Case(
            "offset",
            f"offset={seeded.deep_index}",
            f"limit={PAGE}&offset={seeded.deep_index}",
            LIST_SQL.format(where="", order="ASC") + " LIMIT $2 OFFSET $3",
            (session_id, limit, seeded.deep_index),
        ),
    ]


@dataclass(frozen=True)
class LatencyOptions:
    requests: int
    warmup_requests: int
    case_seconds: float


async def _check_same_page(
    client: httpx.AsyncClient, conn: asyncpg.Connection, url: str, case: Case
) -> None:
    """agenthub's page must be the rows the raw query returns, in the same order."""
    resp = await client.get(url)
    expect(resp, 200)
    page = resp.json()
    rows = await conn.fetch(case.sql, *case.args)
    ids = [r["id"] for r in rows[:PAGE]]
    if case.backwards:
        ids.reverse()
    got = [m["id"] for m in page["data"]]
    if got != ids or page["has_more"] != (len(rows) > PAGE):
        raise RuntimeError(f"{case.label}: agenthub's page differs from the raw query's rows")


async def time_cases(
    client: httpx.AsyncClient,
    conn: asyncpg.Connection,
    path: str,
    group: list[Case],
    opts: LatencyOptions,
) -> dict[str, Timing]:
    """Warm-up, then up to `requests` rounds; a round runs each case once: the agenthub
    request, then its raw query, one at a time. Interleaving the cases and the two sides
    spreads any background load evenly over them. The rounds stop early after
    `case_seconds` per case once there are `MIN_REQUESTS` of them (and the warm-up after a
    quarter of that), which only the offset case reaches at the defaults."""
    urls = [f"{path}?{case.query}" for case in group]
    for case, url in zip(group, urls, strict=True):
        await _check_same_page(client, conn, url, case)
    warm_until = time.perf_counter() + opts.case_seconds * len(group) / 4
    for _ in range(opts.warmup_requests):
        for case, url in zip(group, urls, strict=True):
            expect(await client.get(url), 200)
            await conn.fetch(case.sql, *case.args)
        if time.perf_counter() > warm_until:
            break
    samples: dict[str, tuple[list[float], list[float], list[float]]] = {
        case.kind: ([], [], [])
        for case in group  # server, e2e, raw
    }
    deadline = time.perf_counter() + opts.case_seconds * len(group)
    for i in range(opts.requests):
        for case, url in zip(group, urls, strict=True):
            server, e2e, raw = samples[case.kind]
            sent = time.perf_counter()
            resp = await client.get(url)
            received = time.perf_counter()
            expect(resp, 200)
            e2e.append((received - sent) * 1000)
            server.append(float(resp.headers["x-process-time"]) * 1000)
            sent = time.perf_counter()
            await conn.fetch(case.sql, *case.args)
            raw.append((time.perf_counter() - sent) * 1000)
        if i + 1 >= MIN_REQUESTS and time.perf_counter() > deadline:
            break
    return {
        kind: Timing(sorted(server), sorted(e2e), sorted(raw))
        for kind, (server, e2e, raw) in samples.items()
    }


async def explain(conn: asyncpg.Connection, case: Case, lines: int = 8) -> list[str]:
    rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {case.sql}", *case.args)
    plan = [str(r[0]) for r in rows]
    return plan[:lines]


async def measure_lists(
    base_url: str,
    token: str,
    dsn: str,
    session_id: str,
    seeded: Seeded,
    opts: LatencyOptions,
) -> tuple[list[Case], dict[str, Timing], dict[str, list[str]]]:
    """The cases, their timings by kind, and the plans of the deep cursor and offset queries
    (by label)."""
    path = f"/v1/sessions/{session_id}/messages"
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timings: dict[str, Timing] = {}
    plans: dict[str, list[str]] = {}
    conn = await asyncpg.connect(dsn)
    try:
        async with httpx.AsyncClient(
            base_url=base_url, headers=headers, limits=limits, timeout=60.0
        ) as client:
            all_cases = cases(session_id, seeded)
            cursor_cases = [c for c in all_cases if c.kind != "offset"]
            offset_cases = [c for c in all_cases if c.kind == "offset"]
            for group in (cursor_cases, offset_cases):
                timings.update(await time_cases(client, conn, path, group, opts))
                done = ", ".join(f"{c.label} ({timings[c.kind].n})" for c in group)
                print(f"  measured {done}", flush=True)
            for case in all_cases:
                if case.kind in ("after", "offset"):
                    plans[case.label] = await explain(conn, case)
    finally:
        await conn.close()
    return all_cases, timings, plans


# --- append throughput ---------------------------------------------------------------------


def append_script(workdir: Path) -> Path:
    """A wrk Lua script that POSTs the same message body on every request."""
    body = (
        f'{{"role": "user", "content": "{APPEND_CONTENT}", '
        f'"prompt_tokens": {APPEND_PROMPT_TOKENS}}}'
    )
    script = workdir / "append.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return script


def agenthub_appends(
    server: Server,
    token: str,
    session_id: str,
    workdir: Path,
    connections: int,
    seconds: float,
    warmup: float,
) -> Load:
    """wrk POSTs for `warmup` s (discarded), then for `seconds` s, with the CPU time the
    server process used during the measured run."""
    url = f"{server.base_url}/v1/sessions/{session_id}/messages"
    headers = {"Authorization": f"Bearer {token}"}
    script = append_script(workdir)
    if warmup > 0:
        run_wrk(url, connections, warmup, headers=headers, script=script)
    process = psutil.Process(server.pid)
    cpu_before = _cpu_seconds(process)
    load = run_wrk(url, connections, seconds, headers=headers, script=script)
    cpu = _cpu_seconds(process) - cpu_before
    return replace(load, cpu_ms_per_request=cpu * 1000 / max(load.requests, 1))


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def _raw_appends(
    pool: asyncpg.Pool, user_id: str, session_id: str, connections: int, seconds: float
) -> Load:
    latencies: list[float] = []
    errors = 0

    async def worker() -> None:
        nonlocal errors
        async with pool.acquire() as conn:
            while (sent := time.perf_counter()) < deadline:
                now = datetime.now(UTC)
                try:
                    async with conn.transaction():
                        await conn.execute(
                            INSERT_SQL,
                            new_id("msg"),
                            session_id,
                            "user",
                            APPEND_CONTENT,
                            "{}",
                            APPEND_PROMPT_TOKENS,
                            0,
                            now,
                            user_id,
                        )
                        await conn.fetchrow(UPDATE_SQL, session_id, APPEND_PROMPT_TOKENS, 0, now)
                except asyncpg.PostgresError:
                    errors += 1
                    continue
                latencies.append((time.perf_counter() - sent) * 1000)

    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(*(worker() for _ in range(connections)))
    return load_of(latencies, errors, time.perf_counter() - started)


async def raw_appends(
    dsn: str, user_id: str, session_id: str, connections: int, seconds: float, warmup: float
) -> Load:
    pool = await asyncpg.create_pool(dsn, min_size=connections, max_size=connections)
    try:
        if warmup > 0:
            await _raw_appends(pool, user_id, session_id, connections, warmup)
        return await _raw_appends(pool, user_id, session_id, connections, seconds)
    finally:
        await pool.close()


async def counts(dsn: str, session_id: str) -> tuple[int, int]:
    """The session's `message_count` and the number of its message rows."""
    conn = await asyncpg.connect(dsn)
    try:
        kept = await conn.fetchval("SELECT message_count FROM sessions WHERE id = $1", session_id)
        rows = await conn.fetchval(
            "SELECT count(*) FROM messages WHERE session_id = $1", session_id
        )
    finally:
        await conn.close()
    return int(kept), int(rows)


# --- report --------------------------------------------------------------------------------


_p = percentile


def print_seed(seeded: Seeded) -> None:
    print(
        f"\nseed: {seeded.count:,} messages (avg content {seeded.avg_content_bytes:.0f} B, "
        f"messages with indexes {seeded.size}) in {seeded.copy_s + seeded.vacuum_s:.1f} s: "
        f"ids + COPY + counters {seeded.copy_s:.1f} s "
        f"({seeded.count / seeded.copy_s:,.0f} messages/s), VACUUM ANALYZE {seeded.vacuum_s:.1f} s",
        flush=True,
    )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def report_lists(
    all_cases: list[Case],
    timings: dict[str, Timing],
    plans: dict[str, list[str]],
    opts: LatencyOptions,
    load_avg: float,
) -> None:
    """Print the latency table, the ratios (deep cursor / first page: within 1.5x?), plans."""
    print(
        f"\nmessage list, limit={PAGE}: up to {opts.requests} sequential requests per case after "
        f"up to {opts.warmup_requests} warm-up rounds, each followed by the same SQL through "
        f"asyncpg (at most {opts.case_seconds:g} s per case); load average before {load_avg:.2f}"
    )
    print(
        f"  {'case':<20} {'n':>4} | {'server p50':>10} {'p99':>7} | {'e2e p50':>8} {'p99':>7} | "
        f"{'raw p50':>8} {'p99':>7} | {'server/raw p50':>14} {'p99':>6}"
    )
    for case in all_cases:
        label, t = case.label, timings[case.kind]
        sp50, sp99 = _p(t.server_ms, 0.5), _p(t.server_ms, 0.99)
        rp50, rp99 = _p(t.raw_ms, 0.5), _p(t.raw_ms, 0.99)
        print(
            f"  {label:<20} {t.n:>4} | {sp50:>10.2f} {sp99:>7.2f} | "
            f"{_p(t.e2e_ms, 0.5):>8.2f} {_p(t.e2e_ms, 0.99):>7.2f} | "
            f"{rp50:>8.3f} {rp99:>7.3f} | {_ratio(sp50, rp50):>14} {_ratio(sp99, rp99):>6}"
        )
    print("  (milliseconds; server = X-Process-Time, e2e = client-measured, raw = asyncpg)")
    first = timings["first"]
    holds = True
    for case in all_cases:
        if case.kind not in ("after", "before"):
            continue
        label, deep = case.label, timings[case.kind]
        ratio = _p(deep.server_ms, 0.5) / _p(first.server_ms, 0.5)
        holds = holds and ratio <= 1.5
        print(
            f"  deep cursor / first page, {label}: server p50 {ratio:.2f}x, "
            f"p99 {_p(deep.server_ms, 0.99) / _p(first.server_ms, 0.99):.2f}x, "
            f"e2e p50 {_p(deep.e2e_ms, 0.5) / _p(first.e2e_ms, 0.5):.2f}x, "
            f"raw p50 {_p(deep.raw_ms, 0.5) / _p(first.raw_ms, 0.5):.2f}x"
        )
    offset = timings["offset"]
    print(
        f"  offset / first page: server p50 "
        f"{_p(offset.server_ms, 0.5) / _p(first.server_ms, 0.5):.1f}x"
    )
    print(
        f"  deep cursor paging within 1.5x of the first page (server p50): "
        f"{'yes' if holds else 'NO'}"
    )
    for label, plan in plans.items():
        print(f"\nEXPLAIN (ANALYZE, BUFFERS), {label}:")
        for line in plan:
            print(f"  {line}")
    sys.stdout.flush()


def report_appends(
    ours: Load, base: Load, opts: Options, load_avg: float, kept: int, rows: int
) -> None:
    n, seconds = opts.connections, opts.duration
    print(
        f"\nmessage append, {n} connections, {seconds:g} s after {opts.warmup:g} s warm-up each; "
        f"agenthub: wrk POST /v1/sessions/{{id}}/messages (Lua script body); baseline: INSERT + "
        f"UPDATE sessions in one transaction, {n} asyncio workers on an asyncpg pool of {n}; "
        f"load average before {load_avg:.2f}"
    )
    print(
        f"  {'server':<10} {'appends/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'count':>7} {'errors':>7}"
    )
    for name, load in (("agenthub", ours), ("baseline", base)):
        print(
            f"  {name:<10} {load.requests_per_s:>10.1f} {load.p50_ms:>8.2f} {load.p99_ms:>8.2f} "
            f"{load.requests:>7} {load.errors:>7}"
        )
    print(f"  ratio (agenthub / baseline): {_ratio(ours.requests_per_s, base.requests_per_s)}")
    busy = ours.cpu_ms_per_request * ours.requests / (seconds * 1000)
    print(
        f"  agenthub server process: {ours.cpu_ms_per_request:.2f} ms CPU per append, "
        f"{busy:.2f} of a core busy"
    )
    same = "yes" if kept == rows else "NO"
    print(f"  session message_count {kept:,} == its rows {rows:,}: {same}")
    sys.stdout.flush()


# --- main ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    messages: int
    latency: LatencyOptions
    duration: float
    warmup: float
    connections: int


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages to seed")
    parser.add_argument("--requests", type=int, default=200, help="rounds per latency case")
    parser.add_argument("--warmup-requests", type=int, default=20, help="warm-up per case")
    parser.add_argument(
        "--case-seconds", type=float, default=20.0, help="time cap per latency case"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per append run")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per append run")
    parser.add_argument("--connections", type=int, default=16, help="concurrent appends")
    args = parser.parse_args(argv)
    if args.messages < 2 * PAGE + 2 or args.requests < 1 or args.warmup_requests < 0:
        parser.error(f"--messages must be >= {2 * PAGE + 2}, --requests >= 1")
    if args.duration < 1 or args.warmup < 0 or args.connections < 1 or args.case_seconds <= 0:
        parser.error("--duration >= 1, --warmup >= 0, --connections >= 1, --case-seconds > 0")
    if not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")
    return Options(
        messages=args.messages,
        latency=LatencyOptions(args.requests, args.warmup_requests, args.case_seconds),
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
    )


def set_up(base_url: str) -> tuple[str, str, str]:
    """A user (token, id) and one of its sessions, through the HTTP API."""
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        token = register_user(client)
        headers = {"Authorization": f"Bearer {token}"}
        resp = client.get("/v1/user/profile", headers=headers)
        expect(resp, 200)
        user_id: str = resp.json()["id"]
        resp = client.post("/v1/sessions", json={"agent_type": "primary"}, headers=headers)
        expect(resp, 201)
        session_id: str = resp.json()["session"]["id"]
    return token, user_id, session_id


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    exit_on_sigterm()
    print(versions_line("agenthub messages benchmark (PostgreSQL)"), flush=True)
    started = time.perf_counter()
    with postgres_database() as (url, workdir):
        from agenthub.db import migrate

        migrate.upgrade(url)
        dsn = pg_dsn(url)
        # A long seed (--messages 10000000) must not outlive the access token.
        env = server_env(url, workdir, AGENTHUB_ACCESS_TOKEN_MINUTES="240")
        with uvicorn_server("agenthub", AGENTHUB_TARGET, env, workdir) as server:
            token, user_id, session_id = set_up(server.base_url)
            seeded = asyncio.run(seed(dsn, user_id, session_id, opts.messages))
            print_seed(seeded)
            load_avg = os.getloadavg()[0]
            all_cases, timings, plans = asyncio.run(
                measure_lists(server.base_url, token, dsn, session_id, seeded, opts.latency)
            )
            report_lists(all_cases, timings, plans, opts.latency, load_avg)
            load_avg = os.getloadavg()[0]
            ours = agenthub_appends(
                server,
                token,
                session_id,
                workdir,
                opts.connections,
                opts.duration,
                opts.warmup,
            )
        base = asyncio.run(
            raw_appends(dsn, user_id, session_id, opts.connections, opts.duration, opts.warmup)
        )
        kept, rows = asyncio.run(counts(dsn, session_id))
        report_appends(ours, base, opts, load_avg, kept, rows)
    print(f"\ntotal {time.perf_counter() - started:.0f} s (database dropped)")
    errors = ours.errors + base.errors
    if errors:
        print(f"{errors} failed appends: the figures above are not trustworthy", file=sys.stderr)
    # Timings are reported, not asserted (ARCHITECTURE.md); wrong results fail the run.
    return 1 if errors or kept != rows else 0


if __name__ == "__main__":
    run_main(main)
