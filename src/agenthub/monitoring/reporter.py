"""`metrics.update` on the `system` channel: this node's snapshot, active alerts and health,
published every `status_interval_seconds` while one of its connections listens there (the
status page's live view). Nobody listening, nothing sampled."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from pydantic import TypeAdapter
from sqlalchemy.exc import SQLAlchemyError

from agenthub.core.channels import SYSTEM
from agenthub.core.events import DomainEvent
from agenthub.monitoring.alerts import Alert
from agenthub.monitoring.health import Health
from agenthub.monitoring.monitor import Monitor, Snapshot
from agenthub.realtime.broker import JsonDict
from agenthub.realtime.hub import Hub

log = structlog.get_logger("agenthub.monitoring")

METRICS_EVENT = "metrics.update"


@dataclass(frozen=True)
class MetricsUpdate:
    health: Health
    snapshot: Snapshot | None  # None while the database cannot be read
    alerts: list[Alert]


_PAYLOAD = TypeAdapter(MetricsUpdate)


class StatusReporter:
    def __init__(
        self,
        hub: Hub,
        monitor: Monitor,
        health: Callable[[], Awaitable[Health]],
        interval: float,
    ) -> None:
        self.hub = hub
        self.monitor = monitor
        self.health = health
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def update(self) -> JsonDict:
        """The event's data, JSON-ready."""
        health = await self.health()
        try:
            snapshot: Snapshot | None = await self.monitor.snapshot()
            alerts = await self.monitor.alerts()
        except (SQLAlchemyError, OSError) as exc:
            log.warning("status_snapshot_failed", error=type(exc).__name__)
            snapshot, alerts = None, []
        data: JsonDict = _PAYLOAD.dump_python(MetricsUpdate(health, snapshot, alerts), mode="json")
        return data

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if not self.hub.has_subscribers(SYSTEM):
                continue
            try:
                self.hub.relay.submit([DomainEvent(SYSTEM, METRICS_EVENT, await self.update())])
            except Exception:  # one bad sample must not end the updates
                log.exception("status_update_failed")
