"""Where the parts are put together, each given what it needs when it is built.

The engines hold registries and know no domain: each domain declares its job kinds, purges
and channel families in its `tasks` module, imported here. `shared_parts` builds what every
process that runs the domains' code shares (the database, the response cache, the broker, the
relay that publishes what the database commits, the runners, the MCP servers); `api_parts`
adds an API process's hub, monitor and embedded worker (`agenthub.app` serves them).

`agenthub worker` is a process that runs jobs until SIGTERM or SIGINT, then hands back. With
`AGENTHUB_WORKER_METRICS_PORT` it serves its own `/metrics` for Prometheus to scrape next to
the API nodes: jobs, job durations and token usage are counted where the jobs run.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import async_sessionmaker

from agenthub.auth import tasks as auth_tasks
from agenthub.cache.base import Cache
from agenthub.cache.memory import MemoryCache
from agenthub.cache.redis import RedisCache
from agenthub.config import Settings
from agenthub.core.security import PasswordHasher, password_hasher
from agenthub.db.engine import Database, create_engine
from agenthub.files import tasks as files_tasks
from agenthub.ideas import tasks as ideas_tasks
from agenthub.jobs import kinds, maintenance
from agenthub.jobs.registry import load_kinds
from agenthub.jobs.worker import Worker
from agenthub.mcp.servers import McpServers
from agenthub.monitoring.monitor import Monitor
from agenthub.realtime.broker import Broker
from agenthub.realtime.hub import Hub
from agenthub.realtime.memory import MemoryBroker
from agenthub.realtime.relay import EventRelay
from agenthub.realtime.watchers import Watchers
from agenthub.runners.registry import Runners
from agenthub.sessions import tasks as sessions_tasks
from agenthub.web.ratelimit import RateLimiter

TASKS = (kinds, maintenance, auth_tasks, sessions_tasks, files_tasks, ideas_tasks)
"""The modules that register job kinds, purges and channel families, engine's and domains'."""


def load_tasks(settings: Settings) -> None:
    """Register everything in `TASKS` (imported above) and the deployment's own modules of
    kinds (`AGENTHUB_JOB_MODULES`)."""
    load_kinds(settings.job_modules)


def create_cache(settings: Settings) -> Cache:
    """Redis when `AGENTHUB_REDIS_URL` is set, the process's memory otherwise."""
    if settings.redis_url:
        return RedisCache(settings)
    return MemoryCache(settings.cache_ttl_seconds, settings.cache_max_entries)


def create_broker(settings: Settings) -> Broker:
    """The Redis broker when `AGENTHUB_REDIS_URL` is set, the in-process one otherwise."""
    if settings.redis_url:
        # Imported only with Redis configured: the client takes long to import.
        from agenthub.realtime.redis import RedisBroker

        return RedisBroker(
            settings.redis_url,
            prefix=settings.redis_prefix,
            history=settings.realtime_history_size,
            history_ttl=settings.realtime_history_ttl_seconds,
            timeout=settings.broker_timeout_seconds,
        )
    return MemoryBroker(
        history=settings.realtime_history_size,
        history_ttl=settings.realtime_history_ttl_seconds,
    )


@dataclass(frozen=True)
class SharedParts:
    settings: Settings
    database: Database
    cache: Cache
    broker: Broker
    relay: EventRelay
    watchers: Watchers
    runners: Runners
    mcp: McpServers


def shared_parts(settings: Settings) -> SharedParts:
    """The database hands what it commits to the response cache (with Redis, a worker's
    writes invalidate the API nodes' cached reads) and to the relay, which records its own
    marks on the same engine."""
    load_tasks(settings)
    engine = create_engine(settings)
    cache = create_cache(settings)
    broker = create_broker(settings)
    relay = EventRelay(settings, broker, async_sessionmaker(engine, expire_on_commit=False))
    database = Database(
        settings, engine=engine, publisher=relay.submit, invalidate=cache.invalidate
    )
    mcp = McpServers(settings.mcp_servers, timeout=settings.mcp_tool_timeout_seconds)
    return SharedParts(
        settings, database, cache, broker, relay, Watchers(broker), Runners(settings), mcp
    )


@dataclass(frozen=True)
class ApiParts:
    shared: SharedParts
    hub: Hub
    monitor: Monitor
    worker: Worker | None
    limiter: RateLimiter
    hasher: PasswordHasher


def api_parts(settings: Settings) -> ApiParts:
    """An API process: the hub (the broker's listener, which hands the watchers their events)
    reports WebSockets to the monitor; the worker runs jobs here unless
    `AGENTHUB_WORKER_ENABLED` is off; the rate limiter and the password hasher serve the
    routes."""
    shared = shared_parts(settings)
    node = secrets.token_hex(4)
    monitor = Monitor(settings, shared.database, node)
    hub = Hub(
        settings,
        shared.database,
        shared.broker,
        shared.relay,
        shared.watchers,
        node=node,
        on_websocket_open=monitor.websocket_opened,
        on_websocket_close=monitor.websocket_closed,
    )
    worker = None
    if settings.worker_enabled:
        worker = Worker(
            settings, shared.database, shared.broker, shared.watchers.watch, shared.runners
        )
    limiter = RateLimiter(settings.redis_url, prefix=settings.redis_prefix)
    return ApiParts(shared, hub, monitor, worker, limiter, password_hasher(settings))


async def run_worker(settings: Settings, *, concurrency: int | None, kinds: list[str]) -> None:
    """`agenthub worker`: the shared parts, the watchers as the broker's listener (no hub,
    no client connections), and a worker."""
    parts = shared_parts(settings)
    worker = Worker(
        settings,
        parts.database,
        parts.broker,
        parts.watchers.watch,
        parts.runners,
        concurrency=concurrency,
        kinds=kinds or None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await parts.broker.start(parts.watchers)
    parts.relay.start()
    try:
        with metrics_server(settings):
            await worker.start()
            await stop.wait()
            await worker.stop()
    finally:
        await parts.relay.close()
        await parts.broker.close()
        await parts.runners.aclose()
        await parts.mcp.close()
        await parts.cache.close()
        await parts.database.dispose()


@contextmanager
def metrics_server(settings: Settings) -> Iterator[None]:
    """This process's metrics on `AGENTHUB_HOST`:`AGENTHUB_WORKER_METRICS_PORT`, if set."""
    if settings.worker_metrics_port is None:
        yield
        return
    server, thread = start_http_server(settings.worker_metrics_port, addr=settings.host)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
