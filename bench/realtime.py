"""Benchmark `/v1/ws` on one node (in-process and Redis brokers) against a bare `websockets` server.

Two measurements per server, each on a fresh server process (uvicorn, one worker, uvloop):

- **Idle connections.** N connections (default 1,000 and 10,000, all with one user's token) each
  receive `connected`, subscribe to the user's own channel `user:{id}` and get `subscribed`; the
  server's RSS after, minus its RSS before (after a warm-up of a few connections), divided by N.
- **Fan-out.** 1,000 subscribers of `room:bench`; a publisher connection sends `publish` frames
  whose data carries its send time (`time.time()`, one clock: one machine), first at a fixed rate,
  then as one burst as fast as the server takes them. Every subscriber checks it gets each event
  once and in order, and records publish-to-receive latency. Printed: deliveries/s (events received
  by all subscribers / time from the first publish to the last delivery), p50/p99 latency, lost
  events, the server's CPU time per delivery.

The baseline is a `websockets.asyncio.server.serve` process (same machine, uvloop) that sends the
same `connected`, `subscribed` and `published` frames and, for each publish, builds the same event
frame and hands it to `websockets.broadcast` for the channel's connections: no hub, no outbox, no
ASGI. Clients run in separate processes (`--clients`, default 2; uvloop), each connection driven
by the `websockets` Sans-I/O protocol straight from its transport (no task per connection, so
the clients take as little of the shared CPUs as possible). By default they offer
permessage-deflate, as browsers do, so both servers compress every frame for every connection.
The Redis backend runs with a unique key prefix on `--redis-url`, its keys deleted afterwards.

    .venv/bin/python bench/realtime.py [--quick] [--backend memory|redis|both]
        [--connections 1000,10000] [--subscribers 1000] [--publications 200] [--rate 10]
        [--burst 300] [--clients 2] [--compression deflate|none] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import sys
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvloop
from websockets.asyncio.client import connect

from common import (
    AGENTHUB_TARGET,
    exit_on_sigterm,
    expect,
    log_tail,
    percentile,
    server_env,
    sqlite_database,
    uvicorn_server,
)
from realtime_baseline import baseline_process
from realtime_clients import (
    HEARTBEAT_FRAME,
    IDLE_TIMEOUT_S,
    Arm,
    Clients,
    CloseAll,
    Collect,
    Collected,
    client_processes,
)
from realtime_common import Compression, dumps, process_cpu_seconds, raise_nofile_limit

ROOM = "room:bench"
WARMUP_CONNECTIONS = 20
WARMUP_PUBLICATIONS = 50
SETTLE_S = 2.0  # after opening or closing connections, before reading RSS


# --- the publisher (in the parent process) ------------------------------------------------


@dataclass(frozen=True)
class Published:
    first_send: float  # time.time()
    last_ack: float
    acks: int
    errors: int
    first_error: str


async def publish(url: str, run: int, count: int, rate: float | None, text: str) -> Published:
    """Send `count` publish frames, at `rate` a second or as fast as the server takes them."""
    async with connect(url, compression=None, max_size=2**20) as ws:
        hello = json.loads(await ws.recv())
        if hello.get("type") != "connected":
            raise RuntimeError(f"publisher: first frame {hello}")
        acks = errors = 0
        first_error = ""
        last_ack = math.nan
        done = asyncio.Event()

        async def read_acks() -> None:
            nonlocal acks, errors, first_error, last_ack
            async for raw in ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "published":
                    acks += 1
                elif kind == "error":
                    errors += 1
                    first_error = first_error or str(frame)
                elif kind == "heartbeat":
                    await ws.send(HEARTBEAT_FRAME)
                    continue
                else:
                    continue
                last_ack = time.time()
                if acks + errors >= count:
                    done.set()

        reader = asyncio.create_task(read_acks())
        start = time.time()
        started = time.perf_counter()
        for seq in range(count):
            if rate is not None:
                delay = started + seq / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            data = {"run": run, "seq": seq, "t": time.time(), "text": text}
            await ws.send(dumps({"type": "publish", "id": str(seq), "channel": ROOM, "data": data}))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), IDLE_TIMEOUT_S * 4)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    return Published(start, last_ack, acks, errors, first_error)


# --- measurements ----------------------------------------------------------------------------


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


@dataclass(frozen=True)
class Idle:
    connections: int
    rss_before: int
    rss_after: int
    open_s: float
    redis_bytes: float = math.nan  # growth of Redis used_memory, for the Redis backend

    @property
    def per_connection(self) -> float:
        return (self.rss_after - self.rss_before) / self.connections


def measure_idle(
    clients: Clients, url: str, pid: int, channel: str, count: int, redis_url: str | None
) -> Idle:
    clients.open(url, WARMUP_CONNECTIONS, channel)  # first-use work: imports, caches, pools
    clients.ask_all(CloseAll())
    time.sleep(SETTLE_S)
    redis_before = _redis_used_memory(redis_url)
    before = _rss(pid)
    started = time.perf_counter()
    clients.open(url, count, channel)
    open_s = time.perf_counter() - started
    time.sleep(SETTLE_S)
    after = _rss(pid)
    redis_grew = _redis_used_memory(redis_url) - redis_before
    clients.ask_all(CloseAll())
    return Idle(count, before, after, open_s, redis_grew / count if redis_url else math.nan)


@dataclass(frozen=True)
class Run:
    """One fan-out run as the subscribers saw it."""

    kind: str  # "rate" or "burst"
    publications: int
    subscribers: int
    received: int
    disordered: int
    closed: dict[int, int]
    wall_s: float  # first publish sent .. last delivery
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_s: float
    clients_cpu_s: float
    publish_errors: int
    first_error: str
    client_errors: list[str]

    @property
    def expected(self) -> int:
        return self.publications * self.subscribers

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def deliveries_per_s(self) -> float:
        return self.received / self.wall_s if self.wall_s > 0 else math.nan

    @property
    def cpu_us_per_delivery(self) -> float:
        return self.server_cpu_s * 1e6 / max(self.received, 1)


def fan_out_run(
    clients: Clients,
    url: str,
    pid: int,
    subscribers: int,
    run: int,
    kind: str,
    publications: int,
    rate: float | None,
    text: str,
) -> Run:
    clients.ask_all(Arm(run, publications))
    cpu_before, clients_before = process_cpu_seconds(pid), clients.cpu_seconds()
    published = uvloop.run(publish(url, run, publications, rate, text))
    replies = [r for r in clients.ask_all(Collect(run)) if isinstance(r, Collected)]
    cpu = process_cpu_seconds(pid) - cpu_before
    clients_cpu = clients.cpu_seconds() - clients_before
    latencies = array("d")
    for reply in replies:
        latencies.frombytes(reply.latencies)
    ordered = sorted(latencies)
    last = max((r.last for r in replies if r.received), default=math.nan)
    closed: dict[int, int] = {}
    for reply in replies:
        for code, n in reply.closed.items():
            closed[code] = closed.get(code, 0) + n
    return Run(
        kind=kind,
        publications=publications,
        subscribers=subscribers,
        received=sum(r.received for r in replies),
        disordered=sum(r.disordered for r in replies),
        closed=closed,
        wall_s=last - published.first_send,
        p50_ms=percentile(ordered, 0.50) * 1000,
        p99_ms=percentile(ordered, 0.99) * 1000,
        max_ms=(ordered[-1] * 1000) if ordered else math.nan,
        server_cpu_s=cpu,
        clients_cpu_s=clients_cpu,
        publish_errors=published.errors + (publications - published.acks - published.errors),
        first_error=published.first_error,
        client_errors=[e for r in replies for e in r.errors],
    )


@dataclass(frozen=True)
class FanOut:
    subscribe_s: float  # opening and subscribing every subscriber
    runs: list[Run]


def measure_fan_out(clients: Clients, url: str, pid: int, opts: Options) -> FanOut:
    started = time.perf_counter()
    clients.open(url, opts.subscribers, ROOM)
    subscribe_s = time.perf_counter() - started
    text = "x" * opts.payload_bytes
    # Warm-up (not reported): also a barrier behind every presence.join of the subscriptions.
    fan_out_run(clients, url, pid, opts.subscribers, 0, "warm-up", WARMUP_PUBLICATIONS, None, text)
    runs = [
        fan_out_run(
            clients, url, pid, opts.subscribers, 1, "rate", opts.publications, opts.rate, text
        ),
        fan_out_run(clients, url, pid, opts.subscribers, 2, "burst", opts.burst, None, text),
    ]
    clients.ask_all(CloseAll())
    return FanOut(subscribe_s, runs)


# --- servers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    backends: list[str]
    connections: list[int]
    subscribers: int
    publications: int
    rate: float
    burst: int
    clients: int
    compression: Compression
    payload_bytes: int
    redis_url: str


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str


@dataclass
class Results:
    idle: dict[int, Idle] = field(default_factory=dict)
    fan_out: FanOut | None = None
    load_avg: float = field(default_factory=lambda: os.getloadavg()[0])  # when it started


def _redis_used_memory(redis_url: str | None) -> int:
    if redis_url is None:
        return 0
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        info: dict[str, Any] = client.info("memory")
        return int(info["used_memory"])
    finally:
        client.close()


def _redis_delete(redis_url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
        return len(keys)
    finally:
        client.close()


def log_in(base_url: str, who: Credentials, register: bool) -> tuple[str, str]:
    """(access token, user id), registering the user first when asked."""
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        body = {"email": who.email, "password": who.password}
        if register:
            expect(client.post("/v1/auth/register", json={**body, "username": "bench"}), 201)
        resp = client.post("/v1/auth/login", json=body)
        expect(resp, 200)
        token: str = resp.json()["access_token"]
        resp = client.get("/v1/user/profile", headers={"Authorization": f"Bearer {token}"})
        expect(resp, 200)
        user_id: str = resp.json()["id"]
    return token, user_id


@contextmanager
def agenthub_server(
    database_url: str, workdir: Path, backend: str, opts: Options, who: Credentials, fresh: bool
) -> Iterator[tuple[str, int, str, str | None]]:
    """(ws URL with token, pid, user channel, redis URL or None) of a fresh agenthub server."""
    extra = {
        "AGENTHUB_PASSWORD_TIME_COST": "1",
        "AGENTHUB_PASSWORD_MEMORY_KIB": "1024",
        "AGENTHUB_LOGIN_LIMIT_IP": "100000/minute",
        "AGENTHUB_LOGIN_LIMIT_ACCOUNT": "100000/minute",
        "AGENTHUB_WS_FRAMES_PER_SECOND": "1000000",  # the publisher sends bursts
        # Subscribing 1,000 connections to one room can take longer than two heartbeats on a
        # busy machine, and a frame waiting in the server counts as client silence.
        "AGENTHUB_HEARTBEAT_INTERVAL": "600",
    }
    prefix = f"agenthub-bench-{secrets.token_hex(4)}"
    redis_url = opts.redis_url if backend == "redis" else None
    if redis_url is not None:
        extra |= {"AGENTHUB_REDIS_URL": redis_url, "AGENTHUB_REDIS_PREFIX": prefix}
    env = server_env(database_url, workdir, **extra)
    try:
        with uvicorn_server(f"agenthub-{backend}", AGENTHUB_TARGET, env, workdir) as server:
            token, user_id = log_in(server.base_url, who, fresh)
            ws_url = server.base_url.replace("http://", "ws://") + f"/v1/ws?token={token}"
            try:
                yield ws_url, server.pid, f"user:{user_id}", redis_url
            except Exception:
                tail = log_tail(workdir / f"agenthub-{backend}.log")
                print(f"agenthub-{backend} log:\n{tail}", file=sys.stderr)
                raise
    finally:
        if redis_url is not None:
            _redis_delete(redis_url, prefix)


def bench_agenthub(
    database_url: str, workdir: Path, backend: str, clients: Clients, opts: Options
) -> Results:
    results = Results()
    who = Credentials(f"bench-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(18))
    fresh = True
    for count in opts.connections:
        with agenthub_server(database_url, workdir, backend, opts, who, fresh) as (
            url,
            pid,
            channel,
            redis_url,
        ):
            fresh = False
            results.idle[count] = measure_idle(clients, url, pid, channel, count, redis_url)
            _progress(f"{backend}: {count} idle connections", results.idle[count])
    with agenthub_server(database_url, workdir, backend, opts, who, fresh) as (url, pid, _, _):
        results.fan_out = measure_fan_out(clients, url, pid, opts)
        _progress(f"{backend}: fan-out", results.fan_out)
    return results


def bench_baseline(workdir: Path, clients: Clients, opts: Options) -> Results:
    results = Results()
    for count in opts.connections:
        with baseline_process(workdir, opts.compression) as (url, pid):
            results.idle[count] = measure_idle(clients, url, pid, "user:usr_baseline", count, None)
            _progress(f"baseline: {count} idle connections", results.idle[count])
    with baseline_process(workdir, opts.compression) as (url, pid):
        results.fan_out = measure_fan_out(clients, url, pid, opts)
        _progress("baseline: fan-out", results.fan_out)
    return results


def _progress(what: str, result: Idle | FanOut) -> None:
    if isinstance(result, Idle):
        detail = (
            f"{result.per_connection / 1024:.1f} KiB/connection, opened in {result.open_s:.1f} s"
        )
    else:
        detail = f"subscribed in {result.subscribe_s:.1f} s, " + ", ".join(
            f"{r.kind} {r.deliveries_per_s:,.0f}/s lost {r.lost}" for r in result.runs
        )
    print(f"  ... {what}: {detail}", file=sys.stderr, flush=True)


# --- report --------------------------------------------------------------------------------


def _ratio(ours: float, base: float) -> str:
    if not (math.isfinite(ours) and math.isfinite(base)) or base == 0:
        return "-"
    return f"{ours / base:.2f}x"


def print_report(results: dict[str, Results], opts: Options) -> None:
    base = results["baseline"]
    servers = [name for name in results if name != "baseline"]
    print(
        f"\nIdle connections (each subscribed to the user's own channel user:{{id}}; "
        f"server RSS after - before, / N; compression {opts.compression or 'none'}):"
    )
    print(f"  {'server':<16} {'N':>7} {'KiB/conn':>9} {'ratio':>7} {'open s':>7} {'RSS MiB':>9}")
    for count in opts.connections:
        for name in [*servers, "baseline"]:
            idle = results[name].idle[count]
            ratio = _ratio(idle.per_connection, base.idle[count].per_connection)
            print(
                f"  {name:<16} {count:>7} {idle.per_connection / 1024:>9.1f} "
                f"{ratio if name != 'baseline' else '':>7} {idle.open_s:>7.1f} "
                f"{idle.rss_after / 2**20:>9.1f}"
            )
            if math.isfinite(idle.redis_bytes) and name != "baseline":
                print(f"  {'':<16} {'':>7} + {idle.redis_bytes / 1024:.1f} KiB/conn in Redis")
    print(
        f"\nFan-out to {opts.subscribers} subscribers of {ROOM} ({opts.clients} client processes; "
        f"payload {opts.payload_bytes} B; rate run: {opts.publications} publications at "
        f"{opts.rate:g}/s; burst: {opts.burst} as fast as accepted):"
    )
    print(
        f"  {'server':<16} {'run':<6} {'deliv/s':>9} {'ratio':>7} {'p50 ms':>8} {'ratio':>7} "
        f"{'p99 ms':>8} {'ratio':>7} {'max ms':>8} {'lost':>6} {'µs cpu/del':>10} {'ratio':>7} "
        f"{'srv cpu':>7} {'cli cpu':>7} {'subscr s':>8}"
    )
    for index in range(2):
        for name in [*servers, "baseline"]:
            fan_out = results[name].fan_out
            base_fan = base.fan_out
            assert fan_out is not None and base_fan is not None
            run, ref = fan_out.runs[index], base_fan.runs[index]
            own = name == "baseline"
            wall = max(run.wall_s, 1e-9)
            print(
                f"  {name:<16} {run.kind:<6} {run.deliveries_per_s:>9,.0f} "
                f"{'' if own else _ratio(run.deliveries_per_s, ref.deliveries_per_s):>7} "
                f"{run.p50_ms:>8.1f} {'' if own else _ratio(run.p50_ms, ref.p50_ms):>7} "
                f"{run.p99_ms:>8.1f} {'' if own else _ratio(run.p99_ms, ref.p99_ms):>7} "
                f"{run.max_ms:>8.1f} {run.lost:>6} {run.cpu_us_per_delivery:>10.2f} "
                f"{'' if own else _ratio(run.cpu_us_per_delivery, ref.cpu_us_per_delivery):>7} "
                f"{run.server_cpu_s / wall:>7.0%} {run.clients_cpu_s / wall:>7.0%} "
                f"{fan_out.subscribe_s:>8.1f}"
            )
            problems = []
            if run.disordered:
                problems.append(f"{run.disordered} duplicate or out-of-order deliveries")
            if run.closed:
                problems.append(f"connections closed by the server (code: count) {run.closed}")
            if run.publish_errors:
                problems.append(f"{run.publish_errors} publishes not acknowledged")
            if run.first_error:
                problems.append(f"first error {run.first_error}")
            problems += [f"client error {error}" for error in run.client_errors]
            for problem in problems:
                print(f"  {'':<16} ! {problem}")
    print(
        "\n  ratio = agenthub / baseline. cpu columns: CPU time of the server / of all client "
        "processes over the run's wall time\n  (100% = one core). Server, clients and publisher "
        f"share {os.cpu_count()} CPUs, so deliveries/s is bounded by all three.\n  1-minute "
        "load average when each server's measurements began: "
        + ", ".join(f"{name} {result.load_avg:.2f}" for name, result in results.items())
        + "."
    )
    sys.stdout.flush()


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N=1000 only, fewer publications")
    parser.add_argument("--backend", choices=("memory", "redis", "both"), default="both")
    parser.add_argument("--connections", help="idle connection counts (default 1000,10000)")
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publications", type=int, help="rate run (default 200; quick 100)")
    parser.add_argument("--rate", type=float, default=10.0, help="publications/s of the rate run")
    parser.add_argument("--burst", type=int, help="burst publications (default 300; quick 200)")
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument("--compression", choices=("deflate", "none"), default="deflate")
    parser.add_argument("--payload-bytes", type=int, default=100)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    connections_arg: str = args.connections or ("1000" if args.quick else "1000,10000")
    try:
        connections = [int(n) for n in connections_arg.split(",")]
    except ValueError:
        parser.error("--connections takes numbers separated by commas")
    publications: int = args.publications or (100 if args.quick else 200)
    burst: int = args.burst or (200 if args.quick else 300)
    if min(connections) < 1 or args.subscribers < 1 or args.clients < 1 or args.rate <= 0:
        parser.error("counts and --rate must be positive")
    backends = ["memory", "redis"] if args.backend == "both" else [args.backend]
    return Options(
        backends=backends,
        connections=connections,
        subscribers=args.subscribers,
        publications=publications,
        rate=args.rate,
        burst=burst,
        clients=args.clients,
        compression=None if args.compression == "none" else "deflate",
        payload_bytes=args.payload_bytes,
        redis_url=args.redis_url,
    )


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    exit_on_sigterm()
    limit = raise_nofile_limit()
    needed = max([*opts.connections, opts.subscribers]) + 1024
    if limit < needed:
        print(f"open-file limit {limit} < {needed}: raise `ulimit -Hn`", file=sys.stderr)
        return 2
    if "redis" in opts.backends:
        try:
            _redis_used_memory(opts.redis_url)
        except Exception as exc:
            print(f"Redis at {opts.redis_url} unavailable: {exc}", file=sys.stderr)
            return 2
    print(
        f"agenthub realtime benchmark: python {sys.version.split()[0]}, uvicorn "
        f"{version('uvicorn')}, websockets {version('websockets')}, uvloop {version('uvloop')}, "
        f"{os.cpu_count()} CPUs, open-file limit {limit}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    sys.stdout.flush()
    from agenthub.db import migrate

    results: dict[str, Results] = {}
    with (
        client_processes(opts.clients, opts.compression) as clients,
        sqlite_database() as (database_url, workdir),
    ):
        migrate.upgrade(database_url)
        for backend in opts.backends:
            results[f"agenthub-{backend}"] = bench_agenthub(
                database_url, workdir, backend, clients, opts
            )
        results["baseline"] = bench_baseline(workdir, clients, opts)
        retried = clients.retried
    print_report(results, opts)
    if retried:
        print(
            f"\n  {retried} connections failed to open at the first attempt and were opened "
            "again (the `!!!` lines above say which phase and why)."
        )
    lost = sum(
        run.lost + run.disordered
        for result in results.values()
        if result.fan_out is not None
        for run in result.fan_out.runs
    )
    if lost:
        print(f"\n{lost} events lost or disordered: see the table", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
