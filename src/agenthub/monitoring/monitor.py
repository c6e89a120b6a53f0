"""What this process knows about itself and the deployment, sampled for metrics and routes.

The request middleware and the realtime hub report to the `Monitor`; `snapshot()` adds the
deployment's state read from the database and the machine (cached for a second, so a busy
scrape or status page costs a few queries per second at most).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass

import psutil
from prometheus_client import Counter, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub import __version__
from agenthub.config import Settings
from agenthub.core.metrics import (
    HTTP_DURATION,
    HTTP_REQUESTS,
    HTTP_STREAM_DURATION,
    WEBSOCKET_CONNECTIONS,
    WEBSOCKET_DISCONNECTIONS,
)
from agenthub.core.middleware import FinishedRequest
from agenthub.db.base import utcnow
from agenthub.db.engine import Database
from agenthub.db.models.jobs import Job
from agenthub.db.models.sessions import ChatSession
from agenthub.jobs.worker import WORKERS_KEY
from agenthub.monitoring.alerts import Alert, Alerts, rules
from agenthub.monitoring.database import QueryTimer, instrument
from agenthub.monitoring.exposition import GaugeSource
from agenthub.monitoring.performance import EventWindow, Figures, Performance
from agenthub.realtime.broker import Broker, BrokerUnavailable, JsonDict
from agenthub.realtime.connection import CONNECTIONS_KEY

SNAPSHOT_MAX_AGE = 1.0
UNMONITORED_PREFIXES = ("/v1/health", "/metrics", "/status")


@dataclass(frozen=True)
class Queue:
    depth: int  # queued and due
    scheduled: int  # queued for later
    running: int
    oldest_seconds: float  # how long the oldest due job has waited


@dataclass(frozen=True)
class Resources:
    cpu_percent: float  # the machine's
    memory_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    process_rss_bytes: int
    process_cpu_percent: float


@dataclass(frozen=True)
class Snapshot:
    version: str
    node: str
    pid: int
    uptime_seconds: float
    resources: Resources
    queue: Queue
    active_sessions: int
    websocket_connections: int  # this process's
    websocket_disconnections_per_minute: int
    requests: Figures  # the last minute


@dataclass(frozen=True)
class _Sampled:
    resources: Resources
    queue: Queue
    active_sessions: int


class Monitor:
    def __init__(self, settings: Settings, database: Database, node: str) -> None:
        self.settings = settings
        self.database = database
        self.node = node
        self.started = time.monotonic()
        self.performance = Performance()
        self.disconnections = EventWindow()
        self.websockets = 0
        self.gauges = GaugeSource()
        self.queries = QueryTimer()
        instrument(database, self.queries)
        self._alerts = Alerts(rules(settings))
        self._process = psutil.Process(os.getpid())
        self._process.cpu_percent()
        psutil.cpu_percent()
        self._sampled: _Sampled | None = None
        self._taken = 0.0
        self._lock = asyncio.Lock()
        # By method, route template and status: few (unmatched paths share one template).
        self._request_metrics: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    # -- reports -------------------------------------------------------------------------

    def observe_request(self, request: FinishedRequest) -> None:
        method, route = request.method, request.route
        if route.startswith(UNMONITORED_PREFIXES):
            return
        labelled = (method, route, request.status)
        children = self._request_metrics.get(labelled)
        if children is None:  # resolved once: `labels()` costs more than the update
            children = self._request_metrics[labelled] = (
                HTTP_REQUESTS.labels(method, route, str(request.status)),
                HTTP_DURATION.labels(method, route),
            )
        children[0].inc()
        children[1].observe(request.seconds)
        if request.stream_seconds is not None:
            HTTP_STREAM_DURATION.labels(method, route).observe(request.stream_seconds)
        self.performance.record(method, route, request.status, request.seconds)

    def websocket_opened(self) -> None:
        self.websockets += 1
        WEBSOCKET_CONNECTIONS.inc()

    def websocket_closed(self, code: int) -> None:
        self.websockets -= 1
        WEBSOCKET_CONNECTIONS.dec()
        WEBSOCKET_DISCONNECTIONS.labels(str(code)).inc()
        self.disconnections.add()

    async def alerts(self) -> list[Alert]:
        return self._alerts.evaluate(await self.snapshot())

    @staticmethod
    async def workers(broker: Broker) -> list[JsonDict]:
        """Live workers (their heartbeats), or none when the broker is away."""
        return await _members(broker, WORKERS_KEY)

    @staticmethod
    async def connections(broker: Broker) -> list[JsonDict]:
        """Realtime connections of every node, or none when the broker is away."""
        return await _members(broker, CONNECTIONS_KEY)

    # -- sampling ------------------------------------------------------------------------

    async def snapshot(self, max_age: float = SNAPSHOT_MAX_AGE) -> Snapshot:
        """The current state: this process's counters as of now, the database and machine
        readings at most `max_age` seconds old."""
        async with self._lock:
            if self._sampled is None or time.monotonic() - self._taken > max_age:
                self._sampled = await self._sample()
                self._taken = time.monotonic()
        sampled = self._sampled
        snapshot = Snapshot(
            version=__version__,
            node=self.node,
            pid=os.getpid(),
            uptime_seconds=round(time.monotonic() - self.started, 3),
            resources=sampled.resources,
            queue=sampled.queue,
            active_sessions=sampled.active_sessions,
            websocket_connections=self.websockets,
            websocket_disconnections_per_minute=self.disconnections.count(60),
            requests=self.performance.totals(60),
        )
        self.gauges.update(_gauges(snapshot))
        return snapshot

    async def _sample(self) -> _Sampled:
        async with self.database.sessions() as db:
            queue = await _queue(db)
            active = await db.scalar(
                select(func.count())
                .select_from(ChatSession)
                .where(ChatSession.deleted_at.is_(None), ChatSession.archived_at.is_(None))
            )
        return _Sampled(self._resources(), queue, int(active or 0))

    def _resources(self) -> Resources:
        memory = psutil.virtual_memory()
        return Resources(
            cpu_percent=psutil.cpu_percent(),
            memory_percent=memory.percent,
            memory_used_bytes=memory.total - memory.available,
            memory_total_bytes=memory.total,
            process_rss_bytes=self._process.memory_info().rss,
            process_cpu_percent=self._process.cpu_percent(),
        )


async def _members(broker: Broker, key: str) -> list[JsonDict]:
    try:
        return await broker.members(key)
    except BrokerUnavailable:
        return []


async def _queue(db: AsyncSession) -> Queue:
    now = utcnow()
    due = Job.run_at <= now
    rows = await db.execute(
        select(Job.status, due, func.count(), func.min(Job.run_at))
        .where(Job.status.in_(("queued", "running")))
        .group_by(Job.status, due)
    )
    depth = scheduled = running = 0
    oldest = 0.0
    for status, is_due, count, first in rows.all():
        if status == "running":
            running += count
        elif is_due:
            depth += count
            if first is not None:
                oldest = max(oldest, (now - first).total_seconds())
        else:
            scheduled += count
    return Queue(depth=depth, scheduled=scheduled, running=running, oldest_seconds=round(oldest, 3))


def _gauges(snapshot: Snapshot) -> list[tuple[str, str, float]]:
    resources, queue = snapshot.resources, snapshot.queue
    return [
        ("active_sessions", "Chat sessions neither archived nor deleted", snapshot.active_sessions),
        ("job_queue_depth", "Jobs queued and due to run", queue.depth),
        ("job_queue_scheduled", "Jobs queued to run later", queue.scheduled),
        ("jobs_running", "Jobs being run by a worker", queue.running),
        ("job_queue_oldest_seconds", "Wait of the oldest due job", queue.oldest_seconds),
        ("system_cpu_percent", "Machine CPU use", resources.cpu_percent),
        ("system_memory_bytes", "Machine memory in use", resources.memory_used_bytes),
        ("system_memory_percent", "Machine memory in use, percent", resources.memory_percent),
    ]
