"""`agenthub worker`: a process that runs jobs until SIGTERM or SIGINT, then hands back.

With `AGENTHUB_WORKER_METRICS_PORT` it serves its own `/metrics` for Prometheus to scrape next
to the API nodes: jobs, job durations and token usage are counted where the jobs run.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server

from agenthub.config import Settings
from agenthub.core.cache import create_cache
from agenthub.db.engine import Database
from agenthub.jobs.registry import load_kinds
from agenthub.jobs.worker import Worker
from agenthub.realtime.broker import create_broker
from agenthub.realtime.hub import Hub
from agenthub.runners.registry import Runners


async def run_worker(settings: Settings, *, concurrency: int | None, kinds: list[str]) -> None:
    load_kinds(settings.job_modules)
    database = Database(settings)
    cache = create_cache(settings)  # with Redis, job writes invalidate the API nodes' reads
    database.invalidate = cache.invalidate
    hub = Hub(settings, database, create_broker(settings))
    await hub.start()
    database.publisher = hub.relay.submit
    worker = Worker(
        settings, database, hub, Runners(settings), concurrency=concurrency, kinds=kinds or None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        with metrics_server(settings):
            await worker.start()
            await stop.wait()
            await worker.stop()
    finally:
        await hub.close()
        await cache.close()
        await database.dispose()


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
