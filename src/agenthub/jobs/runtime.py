"""`agenthub worker`: a process that runs jobs until SIGTERM or SIGINT, then hands back."""

from __future__ import annotations

import asyncio
import signal

from agenthub.config import Settings
from agenthub.db.engine import Database
from agenthub.jobs.registry import load_kinds
from agenthub.jobs.worker import Worker
from agenthub.realtime.broker import broker_publisher, create_broker
from agenthub.realtime.hub import Hub
from agenthub.runners.registry import Runners


async def run_worker(settings: Settings, *, concurrency: int | None, kinds: list[str]) -> None:
    load_kinds(settings.job_modules)
    database = Database(settings)
    hub = Hub(settings, database, create_broker(settings))
    await hub.start()
    database.publisher = broker_publisher(hub.broker)
    worker = Worker(
        settings, database, hub, Runners(settings), concurrency=concurrency, kinds=kinds or None
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await worker.start()
        await stop.wait()
        await worker.stop()
    finally:
        await hub.close()
        await database.dispose()
