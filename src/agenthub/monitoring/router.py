"""`/metrics` and the admin monitoring routes: status, performance, database, alerts, dashboard."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import func, select
from starlette.responses import Response

from agenthub import __version__
from agenthub.core.errors import problem_responses
from agenthub.db.models.agents import Agent
from agenthub.db.models.auth import User
from agenthub.db.models.jobs import Job
from agenthub.db.models.projects import Project
from agenthub.db.models.sessions import ChatSession, Message
from agenthub.db.session import DbSession
from agenthub.monitoring.alerts import Alert
from agenthub.monitoring.database import PoolState, QueryLatency, pool_state
from agenthub.monitoring.exposition import CONTENT_TYPE_LATEST, exposition
from agenthub.monitoring.monitor import Monitor, Snapshot
from agenthub.monitoring.performance import Figures, RouteStats
from agenthub.web.caller import AdminUser

router = APIRouter(
    prefix="/v1/monitoring", tags=["monitoring"], responses=problem_responses(401, 403)
)
metrics_router = APIRouter(tags=["monitoring"])

DASHBOARD = "grafana-dashboard.json"


def monitor_of(request: Request) -> Monitor:
    monitor: Monitor = request.app.state.monitor
    return monitor


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    summary="Prometheus metrics",
)
async def metrics(request: Request) -> Response:
    """Every metric (docs/operations.md) in the Prometheus text format, summed over the server's
    processes; deployment gauges (queue, sessions, machine) are read at scrape time."""
    await monitor_of(request).snapshot()
    return Response(exposition(monitor_of(request).gauges), media_type=CONTENT_TYPE_LATEST)


@dataclass(frozen=True)
class Counts:
    users: int
    projects: int
    agents: int
    sessions: int
    messages: int
    jobs: int


@dataclass(frozen=True)
class Status:
    version: str
    snapshot: Snapshot
    counts: Counts
    workers: list[dict[str, Any]]
    realtime_connections: int  # every node's, from the broker's presence set


@router.get("/status", response_model=Status, summary="Service status")
async def status(request: Request, admin: AdminUser, db: DbSession) -> Status:
    """Version, uptime, row counts, machine and process resources, the job queue, live
    workers and realtime connections."""
    monitor = monitor_of(request)
    counts = Counts(
        **{
            name: int(await db.scalar(select(func.count()).select_from(table)) or 0)
            for name, table in (
                ("users", User),
                ("projects", Project),
                ("agents", Agent),
                ("sessions", ChatSession),
                ("messages", Message),
                ("jobs", Job),
            )
        }
    )
    hub = request.app.state.hub
    return Status(
        version=__version__,
        snapshot=await monitor.snapshot(),
        counts=counts,
        workers=await monitor.workers(hub.broker),
        realtime_connections=len(await monitor.connections(hub.broker)),
    )


@dataclass(frozen=True)
class PerformanceReport:
    window_seconds: float
    totals: Figures
    routes: list[RouteStats]


@router.get("/performance", response_model=PerformanceReport, summary="Request performance")
async def performance(request: Request, admin: AdminUser) -> PerformanceReport:
    """This process's requests over the last five minutes: per route template the count,
    rate, 5xx count and rate, and latency p50/p95/p99 (health probes and `/metrics` excluded)."""
    window = monitor_of(request).performance
    return PerformanceReport(
        window_seconds=window.seconds,
        totals=window.totals(window.seconds),
        routes=window.routes(),
    )


@dataclass(frozen=True)
class DatabaseReport:
    dialect: str
    pool: PoolState
    ping_ms: float
    queries: QueryLatency  # this process's statements over the last five minutes


@router.get("/database", response_model=DatabaseReport, summary="Database pool and latency")
async def database(request: Request, admin: AdminUser, db: DbSession) -> DatabaseReport:
    """The connection pool, one round trip's latency now, and recent statement latency."""
    monitor = monitor_of(request)
    started = time.perf_counter()
    await db.execute(select(1))
    ping = (time.perf_counter() - started) * 1000
    engine = monitor.database.engine
    return DatabaseReport(
        dialect=engine.dialect.name,
        pool=pool_state(engine),
        ping_ms=round(ping, 3),
        queries=monitor.queries.latency(),
    )


@dataclass(frozen=True)
class AlertsReport:
    data: list[Alert]


@router.get("/alerts", response_model=AlertsReport, summary="Active alerts")
async def alerts(request: Request, admin: AdminUser) -> AlertsReport:
    """Rules over CPU, memory, 5xx rate, WebSocket disconnections and queue age
    (thresholds `AGENTHUB_ALERT_*`) that fire now, each with when it started."""
    return AlertsReport(data=await monitor_of(request).alerts())


@router.get("/dashboard", summary="Grafana dashboard")
async def dashboard(admin: AdminUser) -> dict[str, Any]:
    """The Grafana dashboard JSON for these metrics (also shipped in `deploy/grafana/`)."""
    text = resources.files("agenthub.monitoring").joinpath("assets", DASHBOARD).read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded
