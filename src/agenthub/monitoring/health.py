"""Probes: liveness (the process answers), readiness (database reachable and migrated) and
the component report (database, broker, runners, workers, rate limits, cache), each with its
latency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Literal, TypeVar

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.datastructures import State
from starlette.responses import JSONResponse

from agenthub.cache.base import Cache, CacheUnavailable
from agenthub.core.errors import problem_response, problem_responses
from agenthub.db.diagnosis import RUN_MIGRATE
from agenthub.db.engine import Database
from agenthub.db.migrate import current_revision, pending_migration
from agenthub.db.session import get_database
from agenthub.monitoring.monitor import Monitor
from agenthub.realtime.broker import BrokerUnavailable
from agenthub.realtime.hub import Hub
from agenthub.runners.registry import Runners
from agenthub.web.ratelimit import RateLimiter

router = APIRouter(prefix="/v1/health", tags=["health"])

RUNNER_PROBE_SECONDS = 2.0
BROKER_PROBE_SECONDS = 0.5  # a hung Redis must not hold the report past a second
Status = Literal["ok", "degraded", "down"]
T = TypeVar("T")


class Live(BaseModel):
    status: Literal["ok"] = "ok"


class ComponentCheck(BaseModel):
    status: Status
    latency_ms: float
    detail: str | None = None


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    database: ComponentCheck


class Health(BaseModel):
    status: Status
    components: dict[str, ComponentCheck]
    uptime_seconds: float  # this process's


@router.get("/live", response_model=Live)
async def live() -> Live:
    """The process is up and serving."""
    return Live()


async def check_database(database: Database) -> ComponentCheck:
    """Reachable and at the head migration, with the round-trip latency."""
    started = time.perf_counter()
    try:
        async with database.engine.connect() as conn:
            revision = await conn.run_sync(current_revision)
    except Exception as exc:  # any failure to reach the database means "down"
        return ComponentCheck(
            status="down",
            latency_ms=_ms(started),
            detail=f"unreachable ({type(exc).__name__})",
        )
    if pending := pending_migration(revision):
        detail = f"{pending}; {RUN_MIGRATE}"
        return ComponentCheck(status="down", latency_ms=_ms(started), detail=detail)
    return ComponentCheck(status="ok", latency_ms=_ms(started))


async def _from_broker(call: Awaitable[T]) -> T:
    """`call`, or `BrokerUnavailable` once it took `BROKER_PROBE_SECONDS`."""
    try:
        async with asyncio.timeout(BROKER_PROBE_SECONDS):
            return await call
    except TimeoutError:
        raise BrokerUnavailable(f"no answer within {BROKER_PROBE_SECONDS} s") from None


async def check_broker(hub: Hub) -> ComponentCheck:
    """The realtime broker (Redis in scale-out). Down or hung is `degraded`: REST keeps
    working, and live events resume when it returns; channels whose events were lost
    meanwhile start a new epoch (`realtime.relay`)."""
    started = time.perf_counter()
    try:
        await _from_broker(hub.broker.ping())
    except BrokerUnavailable as exc:
        return ComponentCheck(
            status="degraded", latency_ms=_ms(started), detail=f"{hub.broker.name}: {exc}"
        )
    return ComponentCheck(status="ok", latency_ms=_ms(started), detail=hub.broker.name)


async def check_runners(runners: Runners) -> ComponentCheck:
    """The default runner can take work: configured, and its circuit breaker not open."""
    started = time.perf_counter()
    name = runners.default
    try:
        reports = await asyncio.wait_for(runners.health(), RUNNER_PROBE_SECONDS)
    except TimeoutError:
        return ComponentCheck(status="degraded", latency_ms=_ms(started), detail="probe timeout")
    report = next(r for r in reports if r.name == name)
    if not report.configured or not report.reachable or report.breaker == "open":
        detail = report.detail or f"breaker {report.breaker}"
        return ComponentCheck(
            status="degraded", latency_ms=_ms(started), detail=f"{name}: {detail}"
        )
    return ComponentCheck(status="ok", latency_ms=_ms(started), detail=name)


async def check_workers(monitor: Monitor, hub: Hub) -> ComponentCheck:
    """At least one worker sent a heartbeat recently; otherwise jobs wait."""
    started = time.perf_counter()
    try:
        workers = await _from_broker(monitor.workers(hub.broker))
    except BrokerUnavailable as exc:
        detail = f"unknown: {hub.broker.name}: {exc}"
        return ComponentCheck(status="degraded", latency_ms=_ms(started), detail=detail)
    if not workers:
        return ComponentCheck(
            status="degraded", latency_ms=_ms(started), detail="no live worker; jobs wait"
        )
    return ComponentCheck(status="ok", latency_ms=_ms(started), detail=f"{len(workers)} live")


async def check_rate_limits(limiter: RateLimiter) -> ComponentCheck:
    """Where the rate-limit counters are. Redis down is `degraded`: each node counts in
    process (limits per node, not per deployment) until Redis answers again."""
    started = time.perf_counter()
    state = await limiter.status()
    if state.degraded:
        detail = f"{state.backend} unavailable ({state.error}); counting in process"
        return ComponentCheck(status="degraded", latency_ms=_ms(started), detail=detail)
    return ComponentCheck(status="ok", latency_ms=_ms(started), detail=state.backend)


async def check_cache(cache: Cache) -> ComponentCheck:
    """The stats cache (`memory` or `redis`). Redis down is `degraded`: cached reads are
    computed from the database until it answers again."""
    started = time.perf_counter()
    try:
        await cache.ping()
    except CacheUnavailable as exc:
        detail = f"{cache.name}: {exc}"
        return ComponentCheck(status="degraded", latency_ms=_ms(started), detail=detail)
    return ComponentCheck(status="ok", latency_ms=_ms(started), detail=cache.name)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


@router.get("/ready", response_model=Ready, responses=problem_responses(503))
async def ready(request: Request) -> Ready | JSONResponse:
    """Ready to serve: 503 unless the database is reachable and migrated. A Redis outage
    does not make a node unready (see `GET /v1/health`)."""
    check = await check_database(get_database(request))
    if check.status != "ok":
        return problem_response(503, code="not-ready", detail=f"database: {check.detail}")
    return Ready(database=check)


@router.get("", response_model=Health)
async def health(request: Request) -> Health:
    """Each component with its status and latency. Overall `down` when the database is,
    `degraded` when anything else is."""
    return await report(request.app.state)


async def report(state: State) -> Health:
    """The health of every component (the route's answer, also sent to the status page)."""
    database, broker, runners, workers, rate_limits, cache = await asyncio.gather(
        check_database(state.database),
        check_broker(state.hub),
        check_runners(state.runners),
        check_workers(state.monitor, state.hub),
        check_rate_limits(state.limiter),
        check_cache(state.cache),
    )
    components = {
        "database": database,
        "broker": broker,
        "runners": runners,
        "workers": workers,
        "rate_limits": rate_limits,
        "cache": cache,
    }
    statuses = {c.status for c in components.values()}
    overall: Status = (
        "down" if "down" in statuses else "degraded" if "degraded" in statuses else "ok"
    )
    uptime = round(time.monotonic() - state.monitor.started, 3)
    return Health(status=overall, components=components, uptime_seconds=uptime)
