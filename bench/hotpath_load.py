"""The load generator of `bench/hotpath.py`, a process of its own so that its CPU is not the
server's: asyncio on uvloop and a minimal HTTP/1.1 keep-alive client (pre-built requests; the
status line and headers, then `Content-Length` bytes), far cheaper per request than httpx.

    .venv/bin/python bench/hotpath_load.py PLAN.json    (prints the results as JSON)

The plan (JSON): `base_url`; `users`, a list of `{"token", "session_id"}`; `mix`, the weights of
`append` (POST a message), `page` (the latest 20 messages) and `session` (GET the session);
`duration` and `warmup` in seconds; `mode`; `server_pid` (optional: that process's CPU time over
the measured part is reported, per request answered meanwhile, warm-up ones included); and per
mode:

- `closed`: `clients` connections, each picking a random user and the next operation (the
  mix's operations are dealt from shuffled decks), sending, waiting for the answer, and again;
- `open`: `rate` requests per second planned at `t0 + i / rate`, each for a random user; every
  user has its own connection, on which its requests go out in order (queued behind one still
  in flight); latency runs from the planned send time to the answer (no coordinated omission);
- `burst`: the first user reads its latest page in a loop while `logins` (`{"email",
  "password"}` each) log in at once, each on a new connection; `warmup` is the reading before.
  The reads that overlap the burst are counted.

Requests sent during the warm-up are not counted. A request is an error unless answered 2xx:
counted by status, `connection` (refused, reset, unparsable answer) or `timeout` (no answer
once the run has drained).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop

from common import cpu_seconds, percentile

OPERATIONS = ("append", "page", "session")
DEFAULT_MIX = {"append": 50, "page": 40, "session": 10}
MESSAGE = "How do I keep a chat backend fast under load?"
DRAIN_S = 30.0  # the least time left to answer the requests still queued after the last one
LOGIN_TIMEOUT_S = 120.0
READ_LIMIT = 1 << 20
IDLE_REOPEN_S = 4.0
"""uvicorn closes a keep-alive connection idle for 5 s (its default): one idle nearly that long
is reopened rather than raced against that close (an open-loop user can wait that long)."""


class HttpConnection:
    """One HTTP/1.1 keep-alive connection, reopened after an error, `Connection: close` or
    `IDLE_REOPEN_S` without a request."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.used_at = 0.0

    async def open(self) -> None:
        if self.streams is not None and time.monotonic() - self.used_at > IDLE_REOPEN_S:
            self.close()
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port, limit=READ_LIMIT)
        self.used_at = time.monotonic()

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """The status and the lower-cased head of the answer (its body is read and dropped);
        status 0 when the connection failed."""
        try:
            await self.open()
            assert self.streams is not None
            reader, writer = self.streams
            writer.write(request)
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            status = int(head[9:12])
            start = head.index(b"\r\ncontent-length:") + 17
            await reader.readexactly(int(head[start : head.index(b"\r\n", start)]))
            self.used_at = time.monotonic()
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            self.close()
            return 0, b""
        if b"\r\nconnection: close" in head:
            self.close()
        return status, head

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


@dataclass
class Tally:
    """Latencies of the successful requests of one operation and the failures by kind."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def record(self, status: int, ms: float) -> None:
        if 200 <= status < 300:
            self.latencies_ms.append(ms)
        else:
            self.errors[str(status) if status else "connection"] += 1

    def summary(self, elapsed: float) -> dict[str, Any]:
        ms = sorted(self.latencies_ms)
        figures = {f"p{round(q * 100)}_ms": percentile(ms, q) for q in (0.5, 0.95, 0.99)}
        return {
            "completed": len(ms),
            "errors": dict(self.errors),
            "error_count": sum(self.errors.values()),
            "requests_per_s": len(ms) / elapsed if elapsed > 0 else 0.0,
            **{name: value if ms else None for name, value in figures.items()},
            "max_ms": ms[-1] if ms else None,
        }


def merged(tallies: Iterable[Tally]) -> Tally:
    total = Tally()
    for tally in tallies:
        total.latencies_ms += tally.latencies_ms
        total.errors.update(tally.errors)
    return total


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    host_header: str

    @classmethod
    def of(cls, base_url: str) -> Target:
        url = urlsplit(base_url)
        return cls(url.hostname or "127.0.0.1", url.port or 80, url.netloc)

    def request(self, method: str, path: str, token: str | None, body: Any = None) -> bytes:
        """A pre-built HTTP/1.1 request."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host_header}\r\n"
        if token is not None:
            head += f"Authorization: Bearer {token}\r\n"
        if body is None:
            return (head + "\r\n").encode()
        data = json.dumps(body).encode()
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        return head.encode() + data

    def user_requests(self, user: dict[str, str]) -> dict[str, bytes]:
        """The requests of each operation for one user and its session."""
        token, base = user["token"], f"/v1/sessions/{user['session_id']}"
        return {
            "append": self.request(
                "POST", f"{base}/messages", token, {"role": "user", "content": MESSAGE}
            ),
            "page": self.request("GET", f"{base}/messages?order=desc&limit=20", token),
            "session": self.request("GET", base, token),
        }

    def connection(self) -> HttpConnection:
        return HttpConnection(self.host, self.port)


@dataclass
class Run:
    """A measured run: one tally per operation, the measured window, the server's CPU."""

    server_pid: int | None
    tallies: dict[str, Tally] = field(default_factory=lambda: {op: Tally() for op in OPERATIONS})
    measured_from: float = math.inf
    last_answer: float = 0.0
    answered: int = 0  # answers while measuring, to warm-up requests too (the CPU's work)
    cpu_before: float = 0.0
    cpu_s: float | None = None

    def record(self, op: str, status: int, since: float, *, measured: bool) -> None:
        now = time.perf_counter()
        if now >= self.measured_from:
            self.answered += 1
        if measured:
            self.last_answer = now
            self.tallies[op].record(status, (now - since) * 1000)

    def start_measuring(self) -> None:
        self.measured_from = time.perf_counter()
        if self.server_pid is not None:
            self.cpu_before = cpu_seconds(self.server_pid)

    def stop_measuring(self) -> None:
        if self.server_pid is not None:
            self.cpu_s = cpu_seconds(self.server_pid) - self.cpu_before

    def report(self, mode: str) -> dict[str, Any]:
        elapsed = max(self.last_answer - self.measured_from, 1e-9)
        total = merged(self.tallies.values()).summary(elapsed)
        cpu, answered = self.cpu_s, self.answered
        return {
            "mode": mode,
            **total,
            "elapsed_s": elapsed,
            "server_cpu_s": cpu,
            "cpu_ms_per_request": cpu * 1000 / answered if cpu is not None and answered else None,
            "operations": {op: t.summary(elapsed) for op, t in self.tallies.items()},
        }


def operations(mix: dict[str, int]) -> Iterator[str]:
    """Operations in the mix's proportions, endlessly: shuffled decks of each operation
    repeated by its weight (reduced), so that every few requests hold every operation."""
    weights = {op: mix.get(op, 0) for op in OPERATIONS}
    unit = math.gcd(*weights.values())
    deck = [op for op, weight in weights.items() for _ in range(weight // unit)]
    while True:
        random.shuffle(deck)
        yield from deck


async def closed_loop(plan: dict[str, Any], target: Target) -> dict[str, Any]:
    users = [target.user_requests(user) for user in plan["users"]]
    ops = operations(plan.get("mix", DEFAULT_MIX))
    run = Run(plan.get("server_pid"))
    in_flight: dict[int, tuple[str, float]] = {}
    connections = [target.connection() for _ in range(plan["clients"])]
    await asyncio.gather(*(conn.open() for conn in connections))
    started = time.perf_counter()
    deadline = started + plan["warmup"] + plan["duration"]

    async def client(number: int, conn: HttpConnection) -> None:
        while (sent := time.perf_counter()) < deadline:
            op = next(ops)
            in_flight[number] = (op, sent)
            status, _ = await conn.send(random.choice(users)[op])
            del in_flight[number]
            run.record(op, status, sent, measured=sent >= run.measured_from)

    clients = [asyncio.create_task(client(n, conn)) for n, conn in enumerate(connections)]
    await asyncio.sleep(plan["warmup"])
    run.start_measuring()
    await _drain(clients, deadline - time.perf_counter() + DRAIN_S)
    run.stop_measuring()
    _count_timeouts(run, in_flight.values())
    return run.report("closed")


async def open_loop(plan: dict[str, Any], target: Target) -> dict[str, Any]:
    users = [target.user_requests(user) for user in plan["users"]]
    ops = operations(plan.get("mix", DEFAULT_MIX))
    run = Run(plan.get("server_pid"))
    rate: float = plan["rate"]
    planned_total = round((plan["warmup"] + plan["duration"]) * rate)
    first_measured = math.ceil(plan["warmup"] * rate)
    queues: list[asyncio.Queue[tuple[str, float, bool] | None]] = [asyncio.Queue() for _ in users]
    in_flight: dict[int, tuple[str, float]] = {}
    connections = [target.connection() for _ in users]
    await asyncio.gather(*(conn.open() for conn in connections))

    async def user(number: int) -> None:
        conn, requests, queue = connections[number], users[number], queues[number]
        while (item := await queue.get()) is not None:
            op, planned, measured = item
            if measured:
                in_flight[number] = (op, planned)
            status, _ = await conn.send(requests[op])
            if measured:
                del in_flight[number]
            run.record(op, status, planned, measured=measured)

    senders = [asyncio.create_task(user(n)) for n in range(len(users))]
    started = time.perf_counter()
    for i in range(planned_total):
        planned = started + i / rate
        if (delay := planned - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        if i == first_measured:
            run.start_measuring()
        queues[random.randrange(len(users))].put_nowait((next(ops), planned, i >= first_measured))
    for queue in queues:
        queue.put_nowait(None)
    await _drain(senders, max(DRAIN_S, 2 * plan["duration"]))
    run.stop_measuring()
    queued = [(op, at) for queue in queues for op, at, measured in _left(queue) if measured]
    _count_timeouts(run, [*in_flight.values(), *queued])
    return run.report("open")


def _left(queue: asyncio.Queue[tuple[str, float, bool] | None]) -> list[tuple[str, float, bool]]:
    """The requests still queued for a user whose sender was cancelled."""
    items = []
    while not queue.empty():
        if (item := queue.get_nowait()) is not None:
            items.append(item)
    return items


async def _drain(tasks: list[asyncio.Task[None]], within_s: float) -> None:
    """Wait for `tasks` at most `within_s` seconds, then cancel those still running."""
    _, pending = await asyncio.wait(tasks, timeout=max(within_s, 0.0))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def _count_timeouts(run: Run, unanswered: Iterable[tuple[str, float]]) -> None:
    for op, sent in unanswered:
        if sent >= run.measured_from:
            run.tallies[op].errors["timeout"] += 1


async def login_burst(plan: dict[str, Any], target: Target) -> dict[str, Any]:
    page = target.user_requests(plan["users"][0])["page"]
    reader_conn = target.connection()
    reads = Tally()
    window = [math.inf, math.inf]
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            sent = time.perf_counter()
            status, _ = await reader_conn.send(page)
            answered = time.perf_counter()
            if sent < window[1] and answered >= window[0]:  # overlaps the burst
                reads.record(status, (answered - sent) * 1000)

    async def login(account: dict[str, str]) -> tuple[str, float]:
        conn = target.connection()
        request = target.request("POST", "/v1/auth/login", None, account)
        sent = time.perf_counter()
        status, head = await conn.send(request)
        conn.close()
        if status == 503:
            outcome = "unavailable" if b"\r\nretry-after:" in head else "503 without Retry-After"
        else:
            outcome = {0: "connection", 200: "ok"}.get(status, str(status))
        return outcome, (time.perf_counter() - sent) * 1000

    reading = asyncio.create_task(reader())
    await asyncio.sleep(plan["warmup"])
    window[0] = time.perf_counter()
    logins = [asyncio.create_task(login(account)) for account in plan["logins"]]
    done, pending = await asyncio.wait(logins, timeout=LOGIN_TIMEOUT_S)
    window[1] = time.perf_counter()
    stop.set()
    for task in pending:
        task.cancel()
    await asyncio.gather(reading, *pending, return_exceptions=True)
    outcomes = Counter(task.result()[0] for task in done)
    outcomes["timeout"] += len(pending)
    login_ms = sorted(task.result()[1] for task in done)
    elapsed = window[1] - window[0]
    return {
        "mode": "burst",
        "logins": len(logins),
        "ok": outcomes.pop("ok", 0),
        "unavailable": outcomes.pop("unavailable", 0),
        "other": {kind: n for kind, n in outcomes.items() if n},
        "login_p50_ms": percentile(login_ms, 0.5) if login_ms else None,
        "login_max_ms": login_ms[-1] if login_ms else None,
        "elapsed_s": elapsed,
        "reader": reads.summary(elapsed),
    }


MODES: dict[str, Callable[[dict[str, Any], Target], Coroutine[Any, Any, dict[str, Any]]]] = {
    "closed": closed_loop,
    "open": open_loop,
    "burst": login_burst,
}


def main() -> int:
    plan: dict[str, Any] = json.loads(Path(sys.argv[1]).read_text())
    result = uvloop.run(MODES[plan["mode"]](plan, Target.of(plan["base_url"])))
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
