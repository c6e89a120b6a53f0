"""What a run observes, as it happens: request latencies and errors per operation, event
deliveries. Counters are plain attributes: one event loop writes them, the progress bar
reads them."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

from agenthub.load.scenario import Operation


class Recorder:
    def __init__(self) -> None:
        self.latencies: defaultdict[Operation, list[float]] = defaultdict(list)  # seconds, ok
        self.failures: defaultdict[Operation, Counter[str]] = defaultdict(Counter)
        self.deferrals: Counter[Operation] = Counter()  # 503 + Retry-After, tried again
        self.requests = 0
        self.errors = 0
        self.deliveries: list[float] = []  # seconds from an event's `ts` to its receipt
        self.delivered = asyncio.Event()  # set at each delivery
        self.duplicates = 0
        self.ws_errors: Counter[str] = Counter()
        self.started: float | None = None
        self.finished: float | None = None

    def start(self) -> None:
        self.started = time.monotonic()

    def finish(self) -> None:
        self.finished = time.monotonic()

    @property
    def elapsed(self) -> float:
        """Seconds since the start (until the finish, once there is one)."""
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def success(self, operation: Operation, seconds: float) -> None:
        self.requests += 1
        self.latencies[operation].append(seconds)

    def failure(self, operation: Operation, category: str) -> None:
        """A request that failed: its HTTP status (`"429"`) or transport error (`"timeout"`)."""
        self.requests += 1
        self.errors += 1
        self.failures[operation][category] += 1

    def deferral(self, operation: Operation) -> None:
        """A request the server deferred (503 with `Retry-After`, as a burst of logins at the
        bounded password hasher gets): an answer it documents, not an error."""
        self.requests += 1
        self.deferrals[operation] += 1

    def delivery(self, seconds: float) -> None:
        self.deliveries.append(seconds)
        self.delivered.set()

    def ws_error(self, category: str) -> None:
        self.errors += 1
        self.ws_errors[category] += 1
