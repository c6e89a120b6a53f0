"""What a handler gets: its job, the runners, and ways to report progress and stream events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.config import Settings
from agenthub.core.events import DomainEvent
from agenthub.db.engine import Database
from agenthub.db.models.jobs import Job
from agenthub.jobs import queue
from agenthub.runners.registry import Runners

Write = Callable[[AsyncSession], Awaitable[None]]


class JobFailed(Exception):
    """A handler's permanent failure: the job fails at once, without retrying."""

    def __init__(self, message: str, *, type: str = "failed") -> None:
        super().__init__(message)
        self.message = message
        self.type = type


@dataclass
class JobContext:
    job: Job
    """A detached snapshot of the job row at the start of this attempt."""
    worker_id: str
    database: Database
    settings: Settings
    runners: Runners
    _writes: list[Write] = field(default_factory=list)

    @property
    def attempt(self) -> int:
        return self.job.attempts

    def on_complete(self, write: Write) -> None:
        """Run `write(db)` in the transaction that records the job completed; it commits only
        if this attempt still owns the job, so its effect happens exactly once."""
        self._writes.append(write)

    @property
    def writes(self) -> list[Write]:
        return self._writes

    async def progress(self, percent: float | None = None, message: str | None = None) -> None:
        """Store the progress on the job and publish `job.progress`."""
        data = {"percent": percent, "message": message}
        await self.database.run(
            lambda db: queue.report_progress(db, self.job, self.worker_id, data)
        )

    async def publish(self, channel: str, event: str, data: dict[str, Any]) -> None:
        """Publish an event now, outside any transaction (streamed deltas); it is queued in
        order with the job's other events and never waits for the broker."""
        self.database.publish([DomainEvent(channel, event, data)])
