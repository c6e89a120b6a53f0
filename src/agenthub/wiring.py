"""Where the parts are put together: every package's registrations, and `agenthub worker`.

The engines hold registries and know no domain: each domain declares its job kinds, purges
and channel families in its `tasks` module, imported here (and by `agenthub.app`, which wires
the API process through this module).

`agenthub worker` is a process that runs jobs until SIGTERM or SIGINT, then hands back. With
`AGENTHUB_WORKER_METRICS_PORT` it serves its own `/metrics` for Prometheus to scrape next to
the API nodes: jobs, job durations and token usage are counted where the jobs run.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import start_http_server

from agenthub.auth import tasks as auth_tasks
from agenthub.config import Settings
from agenthub.core.cache import create_cache
from agenthub.db.engine import Database
from agenthub.files import tasks as files_tasks
from agenthub.ideas import tasks as ideas_tasks
from agenthub.jobs import kinds, maintenance
from agenthub.jobs.registry import load_kinds
from agenthub.jobs.worker import Worker
from agenthub.realtime.broker import create_broker
from agenthub.realtime.hub import Hub
from agenthub.runners.registry import Runners
from agenthub.sessions import tasks as sessions_tasks

TASKS = (kinds, maintenance, auth_tasks, sessions_tasks, files_tasks, ideas_tasks)
"""The modules that register job kinds, purges and channel families, engine's and domains'."""


def load_tasks(settings: Settings) -> None:
    """Register everything in `TASKS` (imported above) and the deployment's own modules of
    kinds (`AGENTHUB_JOB_MODULES`)."""
    load_kinds(settings.job_modules)


async def run_worker(settings: Settings, *, concurrency: int | None, kinds: list[str]) -> None:
    load_tasks(settings)
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
