"""Prometheus metrics (SPEC §7), correct when several server processes share a port.

`agenthub serve --workers N` sets `PROMETHEUS_MULTIPROC_DIR` before the processes start, so
every counter and histogram is written to a per-process file and `/metrics` sums them
(`prometheus_client.multiprocess`). Values that describe the deployment rather than a process
(queue depth, active sessions, system CPU and memory) are read when scraped
(`monitoring.sampler`) and added by a collector.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900)
STREAM_BUCKETS = (0.1, 1, 10, 60, 300, 900, 3600, 14400, 86400)

HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests by route template", ["method", "route", "status"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request latency by route template (a streamed response: until its headers)",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_STREAM_DURATION = Histogram(
    "http_stream_duration_seconds",
    "How long streamed responses (SSE, exports, downloads) stayed open, by route template",
    ["method", "route"],
    buckets=STREAM_BUCKETS,
)
TOKEN_USAGE = Counter("token_usage_total", "LLM tokens used", ["model", "direction"])
WEBSOCKET_CONNECTIONS = Gauge(
    "websocket_connections", "Open WebSocket connections", multiprocess_mode="livesum"
)
WEBSOCKET_DISCONNECTIONS = Counter(
    "websocket_disconnections_total", "WebSocket connections closed, by close code", ["code"]
)
REALTIME_EVENTS = Counter(
    "realtime_events_total", "Realtime events published, by channel type", ["channel_type"]
)
JOBS = Counter("jobs_total", "Job attempts by kind and outcome", ["kind", "status"])
JOB_DURATION = Histogram(
    "job_duration_seconds", "Job attempt run time by kind", ["kind"], buckets=JOB_BUCKETS
)
RATE_LIMITED = Counter("rate_limited_total", "Requests refused by a rate limit", ["group"])
DB_POOL_SIZE = Gauge("db_pool_size", "Configured database pool size", multiprocess_mode="livesum")
DB_POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out", "Database connections in use", multiprocess_mode="livesum"
)
DB_POOL_CONNECTIONS = Gauge(
    "db_pool_connections", "Open database connections", multiprocess_mode="livesum"
)
DB_QUERY_DURATION = Histogram(
    "db_query_duration_seconds", "Database statement latency", buckets=LATENCY_BUCKETS
)


def count_event(channel: str) -> None:
    """One published realtime event, labelled by the channel's type (`session`, `job`...)."""
    REALTIME_EVENTS.labels(channel.partition(":")[0]).inc()


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


class GaugeSource(Collector):
    """Adds gauges whose values are read at scrape time: `values()` yields
    (name, documentation, value) triples."""

    def __init__(self, values: Iterable[tuple[str, str, float]] = ()) -> None:
        self._values = list(values)

    def update(self, values: Iterable[tuple[str, str, float]]) -> None:
        self._values = list(values)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, documentation, value in self._values:
            yield GaugeMetricFamily(name, documentation, value=value)


def exposition(gauges: GaugeSource) -> bytes:
    """The text format of every metric of this deployment's processes plus `gauges`."""
    if multiprocess_enabled():
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)  # type: ignore[no-untyped-call]
    else:
        processes = REGISTRY
    scraped = CollectorRegistry()
    scraped.register(gauges)
    return generate_latest(processes) + generate_latest(scraped)


def mark_process_dead() -> None:
    """Drop this process's live gauges from the multiprocess files (at shutdown)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


__all__ = ["CONTENT_TYPE_LATEST", "exposition", "mark_process_dead"]
