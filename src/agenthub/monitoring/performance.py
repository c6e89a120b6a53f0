"""Recent request timings of this process: per-route percentiles, rates and error rates.

Prometheus keeps the long history; this window answers "how is it going right now" for the
monitoring routes, the alerts and the status page without a Prometheus server.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

WINDOW_SECONDS = 300.0
MAX_SAMPLES = 100_000


@dataclass(frozen=True)
class Sample:
    at: float
    method: str
    route: str
    status: int
    seconds: float


@dataclass(frozen=True)
class Figures:
    """Requests over a span: how many, how fast, how many 5xx answers."""

    count: int
    per_second: float
    errors: int
    errors_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float

    @classmethod
    def of(cls, samples: list[Sample], span: float) -> Figures:
        ordered = sorted(s.seconds * 1000 for s in samples)
        errors = sum(1 for s in samples if s.status >= 500)
        return cls(
            count=len(samples),
            per_second=len(samples) / span,
            errors=errors,
            errors_per_second=errors / span,
            p50_ms=percentile(ordered, 0.5),
            p95_ms=percentile(ordered, 0.95),
            p99_ms=percentile(ordered, 0.99),
        )


@dataclass(frozen=True)
class RouteStats:
    method: str
    route: str
    figures: Figures


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]


class EventWindow:
    """Timestamps of recent occurrences (e.g. WebSocket disconnections), counted by age."""

    def __init__(self, seconds: float = WINDOW_SECONDS, max_items: int = MAX_SAMPLES) -> None:
        self.seconds = seconds
        self._times: deque[float] = deque(maxlen=max_items)

    def add(self, at: float | None = None) -> None:
        self._times.append(time.monotonic() if at is None else at)

    def count(self, within: float, now: float | None = None) -> int:
        since = (time.monotonic() if now is None else now) - within
        return sum(1 for at in self._times if at >= since)


class Performance:
    """A bounded window of the last `seconds` of requests."""

    def __init__(self, seconds: float = WINDOW_SECONDS, max_samples: int = MAX_SAMPLES) -> None:
        self.seconds = seconds
        self._samples: deque[Sample] = deque(maxlen=max_samples)

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        self._samples.append(Sample(time.monotonic(), method, route, status, seconds))

    def _recent(self, within: float, now: float | None) -> list[Sample]:
        since = (time.monotonic() if now is None else now) - within
        return [s for s in self._samples if s.at >= since]

    def routes(self, within: float | None = None, now: float | None = None) -> list[RouteStats]:
        """Per route template, busiest first."""
        span = within or self.seconds
        groups: dict[tuple[str, str], list[Sample]] = {}
        for sample in self._recent(span, now):
            groups.setdefault((sample.method, sample.route), []).append(sample)
        stats = [
            RouteStats(method, route, Figures.of(samples, span))
            for (method, route), samples in groups.items()
        ]
        return sorted(stats, key=lambda s: (-s.figures.count, s.route, s.method))

    def totals(self, within: float = 60.0, now: float | None = None) -> Figures:
        """Every route together over the last `within` seconds."""
        return Figures.of(self._recent(within, now), within)
