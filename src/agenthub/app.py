"""`create_app(settings)`: the FastAPI application with its middleware, routers and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cache

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute

from agenthub import __version__
from agenthub.agents.router import router as agents_router
from agenthub.apidocs.router import router as apidocs_router
from agenthub.auth import hot as auth_hot
from agenthub.auth.router import router as auth_router
from agenthub.auth.user_router import admin_router
from agenthub.auth.user_router import router as user_router
from agenthub.cache.base import CACHE_HEADER
from agenthub.config import Settings
from agenthub.core.errors import install_error_handlers
from agenthub.core.logging import configure_logging
from agenthub.core.middleware import (
    BodyLimitMiddleware,
    JsonTextMiddleware,
    RequestContextMiddleware,
)
from agenthub.core.openapi import install_openapi
from agenthub.files.router import router as files_router
from agenthub.files.router import upload_body_limits
from agenthub.ideas.router import router as ideas_router
from agenthub.jobs import hot as jobs_hot
from agenthub.jobs.router import admin_router as jobs_admin_router
from agenthub.jobs.router import router as jobs_router
from agenthub.jobs.workflows_router import router as workflows_router
from agenthub.mcp.router import router as mcp_router
from agenthub.monitoring.exposition import mark_process_dead
from agenthub.monitoring.health import report
from agenthub.monitoring.health import router as health_router
from agenthub.monitoring.reporter import StatusReporter
from agenthub.monitoring.router import metrics_router
from agenthub.monitoring.router import router as monitoring_router
from agenthub.monitoring.status_page import router as status_page_router
from agenthub.projects.router import router as projects_router
from agenthub.realtime.router import router as realtime_router
from agenthub.realtime.shutdown import signals_close
from agenthub.realtime.sse import router as sse_router
from agenthub.realtime.ws import router as ws_router
from agenthub.runners.router import router as runners_router
from agenthub.search.router import router as search_router
from agenthub.sessions import hot as sessions_hot
from agenthub.sessions.hot import HotAppend
from agenthub.sessions.router import router as sessions_router
from agenthub.web.hot import HotReads
from agenthub.web.ratelimit import (
    RATE_LIMIT_HEADERS,
    RateLimitMiddleware,
    route_groups,
)
from agenthub.wiring import api_parts

DESCRIPTION = (
    "Self-hosted backend for AI-assistant and AI-agent applications: identity, workspace data, "
    "background jobs and realtime events. Errors are RFC 9457 problem details."
)

ROUTERS: tuple[APIRouter, ...] = (
    health_router,
    metrics_router,
    monitoring_router,
    status_page_router,
    apidocs_router,
    auth_router,
    user_router,
    admin_router,
    projects_router,
    agents_router,
    sessions_router,
    files_router,
    search_router,
    jobs_router,
    jobs_admin_router,
    workflows_router,
    runners_router,
    mcp_router,
    ideas_router,
    realtime_router,
    ws_router,
    sse_router,
)

HOT_READS = (*sessions_hot.READS, *auth_hot.READS, *jobs_hot.READS)
"""The reads answered in front of the router (`web.hot`)."""


@cache
def _included_routes() -> tuple[BaseRoute, ...]:
    """`ROUTERS`, included once per process and shared by every app built in it. FastAPI
    builds an included route's dependency graph on the route's first request after each
    include; an app built later (the tests build one per test) takes the built ones. These
    routes do not consult `app.dependency_overrides`."""
    shared = APIRouter()
    for router in ROUTERS:
        shared.include_router(router)
    return tuple(shared.routes)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the database engine connects lazily and is disposed at shutdown."""
    settings = settings or Settings()
    configure_logging(settings.log_level, settings.log_format)
    settings.signing_key  # noqa: B018 - create the persisted secret before serving
    parts = api_parts(settings)
    shared, hub, worker, monitor = parts.shared, parts.hub, parts.worker, parts.monitor
    database, cache, runners, mcp = shared.database, shared.cache, shared.runners, shared.mcp
    limiter, hasher = parts.limiter, parts.hasher

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await hub.start()
        if worker is not None:
            await worker.start()
        reporter = StatusReporter(
            hub, monitor, lambda: report(app.state), settings.status_interval_seconds
        )
        reporter.start()
        with signals_close(hub):
            yield
        await reporter.stop()
        if worker is not None:
            await worker.stop()
        await hub.close()
        await runners.aclose()
        await mcp.close()
        await limiter.aclose()
        hasher.close()
        await cache.close()
        await database.dispose()
        mark_process_dead()

    app = FastAPI(
        title="agenthub",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_url="/openapi.json",
        docs_url=None,  # apidocs_router serves /docs and /redoc
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.cache = cache
    app.state.hasher = hasher
    app.state.limiter = limiter
    app.state.hub = hub
    app.state.runners = runners
    app.state.mcp = mcp
    app.state.worker = worker
    app.state.monitor = monitor

    install_error_handlers(app)
    install_openapi(app)
    app.add_middleware(HotAppend, database=database, settings=settings)
    app.add_middleware(
        HotReads,
        database=database,
        secret=settings.signing_key,
        reads=HOT_READS,
    )
    app.add_middleware(JsonTextMiddleware)  # inside the body limit: reads bodies within it
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, limits=upload_body_limits(settings)
    )
    if settings.rate_limit_enabled:
        app.add_middleware(
            RateLimitMiddleware,
            limiter=limiter,
            ip_limit=settings.rate_limit_ip,
            user_limit=settings.rate_limit_user,
            group_limits=settings.rate_limits,
            groups=route_groups(ROUTERS),
        )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=[
                "X-Request-ID",
                "X-Process-Time",
                "Retry-After",
                CACHE_HEADER,
                *RATE_LIMIT_HEADERS,
            ],
        )
    app.add_middleware(
        RequestContextMiddleware,
        slow_seconds=settings.slow_request_seconds,
        observe=monitor.observe_request,
    )

    app.router.routes.extend(_included_routes())
    return app
