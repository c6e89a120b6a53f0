"""The figures of a run: per-operation throughput, latency percentiles and errors, event
delivery; as rich tables or as JSON."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from rich.console import Group
from rich.table import Table

from agenthub.load.recorder import Recorder
from agenthub.load.scenario import Operation

RATE_LIMIT_HINT = (
    "Some requests were rate limited (429). For a load test raise the server's limits: "
    "AGENTHUB_RATE_LIMIT_IP and AGENTHUB_RATE_LIMIT_USER (or AGENTHUB_RATE_LIMIT_ENABLED=false); "
    "logins and registrations: AGENTHUB_LOGIN_LIMIT_IP and AGENTHUB_LOGIN_LIMIT_ACCOUNT; "
    "WebSocket handshakes: AGENTHUB_WS_CONNECT_LIMIT."
)
LOGIN_HINT = "Logins were refused (401): check --email and --password."


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank percentile `q` (0..1) of already sorted values; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class Latency:
    """Percentiles in milliseconds (NaN without samples)."""

    p50: float
    p95: float
    p99: float
    max: float

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Latency:
        ms = sorted(s * 1000 for s in seconds)
        return cls(
            percentile(ms, 0.50),
            percentile(ms, 0.95),
            percentile(ms, 0.99),
            ms[-1] if ms else math.nan,
        )

    def as_json(self, prefix: str = "") -> dict[str, float | None]:
        values = {"p50": self.p50, "p95": self.p95, "p99": self.p99, "max": self.max}
        return {
            f"{prefix}{k}_ms": None if math.isnan(v) else round(v, 3) for k, v in values.items()
        }


@dataclass(frozen=True)
class Figures:
    """One operation (or all of them): requests completed, of which failed, by category."""

    count: int
    throughput: float  # requests per second, failed and deferred ones included
    latency: Latency  # of the successful requests
    errors: dict[str, int]
    deferred: int  # answered 503 with Retry-After, and tried again after it

    def as_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "throughput": round(self.throughput, 3),
            **self.latency.as_json(),
            "errors": self.errors,
            "deferred": self.deferred,
        }


@dataclass(frozen=True)
class Delivery:
    """`message.created` events: expected (one per message posted and subscriber of its
    session), received, lost; latency from the event's `ts` to its receipt."""

    subscribers: int
    connected: int
    expected: int
    received: int
    duplicates: int
    latency: Latency
    errors: dict[str, int]

    @property
    def lost(self) -> int:
        return self.expected - self.received

    def as_json(self) -> dict[str, Any]:
        return {
            "subscribers": self.subscribers,
            "connected": self.connected,
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            **self.latency.as_json("delivery_"),
            "errors": self.errors,
        }


@dataclass(frozen=True)
class Report:
    urls: tuple[str, ...]
    users: int
    elapsed: float
    operations: dict[Operation, Figures]
    total: Figures
    websocket: Delivery

    @classmethod
    def build(
        cls, recorder: Recorder, urls: tuple[str, ...], users: int, websocket: Delivery
    ) -> Report:
        elapsed = recorder.elapsed

        def figures(ok: list[float], failed: Counter[str], deferred: int) -> Figures:
            count = len(ok) + failed.total() + deferred
            rate = count / elapsed if elapsed > 0 else 0.0
            return Figures(count, rate, Latency.of(ok), dict(failed.most_common()), deferred)

        operations = {
            op: figures(recorder.latencies[op], recorder.failures[op], recorder.deferrals[op])
            for op in Operation
        }
        every = [s for op in Operation for s in recorder.latencies[op]]
        failed = sum((recorder.failures[op] for op in Operation), Counter[str]())
        total = figures(every, failed, recorder.deferrals.total())
        return cls(urls, users, elapsed, operations, total, websocket)

    @property
    def failed(self) -> bool:
        """Any failed request, WebSocket error, lost or duplicated event."""
        ws = self.websocket
        return bool(self.total.errors or ws.errors or ws.lost or ws.duplicates)

    def hints(self) -> list[str]:
        """What to change when errors have a known cause."""
        hints = []
        if "429" in self.total.errors or any("429" in k for k in self.websocket.errors):
            hints.append(RATE_LIMIT_HINT)
        if "401" in self.operations[Operation.LOGIN].errors:
            hints.append(LOGIN_HINT)
        return hints

    def as_json(self) -> dict[str, Any]:
        return {
            "urls": list(self.urls),
            "users": self.users,
            "duration_s": round(self.elapsed, 3),
            "operations": {op.value: f.as_json() for op, f in self.operations.items()},
            "total": self.total.as_json(),
            "websocket": self.websocket.as_json(),
            "failed": self.failed,
        }

    def tables(self) -> Group:
        return Group(self._requests_table(), self._websocket_table())

    def _requests_table(self) -> Table:
        table = Table(
            title=f"agenthub bench: {self.users} users, {self.elapsed:.1f} s, "
            + ", ".join(self.urls),
            title_justify="left",
        )
        table.add_column("operation")
        for name in ("count", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"):
            table.add_column(name, justify="right")
        table.add_column("errors")
        deferred = self.total.deferred > 0  # a column only when the server deferred any
        if deferred:
            table.add_column("503, retried", justify="right")
        rows = [(op.value, f) for op, f in self.operations.items()]
        for i, (name, f) in enumerate([*rows, ("total", self.total)]):
            lat = f.latency
            table.add_row(
                name,
                f"{f.count:,}",
                f"{f.throughput:,.1f}",
                *(_ms(v) for v in (lat.p50, lat.p95, lat.p99, lat.max)),
                _errors(f.errors),
                *([f"{f.deferred:,}"] if deferred else []),
                style="bold" if i == len(rows) else None,
                end_section=i == len(rows) - 1,
            )
        return table

    def _websocket_table(self) -> Table:
        ws = self.websocket
        table = Table(
            title="WebSocket: message.created events (latency: event ts to receipt, ms)",
            title_justify="left",
        )
        columns = ("subs", "expected", "received", "lost", "dup", "p50", "p95", "p99", "max")
        for name in columns:
            table.add_column(name, justify="right")
        table.add_column("errors")
        lat = ws.latency
        table.add_row(
            f"{ws.connected}/{ws.subscribers}",
            *(f"{n:,}" for n in (ws.expected, ws.received, ws.lost, ws.duplicates)),
            *(_ms(v) for v in (lat.p50, lat.p95, lat.p99, lat.max)),
            _errors(ws.errors),
        )
        return table


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.1f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{name} x{n}" for name, n in errors.items()) or "0"
