"""The Prometheus metrics every layer counts into (exposed by `monitoring.exposition`).

Defining them is not I/O: each is a counter in this process (or, under `agenthub serve
--workers N`, in its per-process file) until `/metrics` is scraped.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
