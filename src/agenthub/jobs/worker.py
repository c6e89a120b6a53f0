"""A worker: claims jobs, runs their handlers, keeps their leases, and hands them back at exit.

The same class runs inside `agenthub serve` (embedded mode) and in `agenthub worker`
processes. It sleeps until the broker says a job was queued (`jobs` channel) and polls every
`AGENTHUB_JOB_POLL_SECONDS` as a fallback, so a broker outage slows pick-up but loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.config import Settings
from agenthub.core.errors import ValidationFailed
from agenthub.core.ids import new_id
from agenthub.core.metrics import JOB_DURATION, JOBS
from agenthub.db.diagnosis import Problem, readiness_problem
from agenthub.db.engine import Database
from agenthub.db.models.jobs import Job
from agenthub.jobs import queue
from agenthub.jobs.context import JobContext, JobFailed
from agenthub.jobs.registry import KINDS, parse_input
from agenthub.jobs.scheduler import run_due_schedules
from agenthub.jobs.workflows import resolve_input
from agenthub.realtime.broker import Broker, BrokerUnavailable, Event
from agenthub.runners.base import RunnerError
from agenthub.runners.registry import Runners
from agenthub.runners.resilience import backoff_delay

log = structlog.get_logger("agenthub.jobs")

WORKERS_KEY = "workers"
"""The presence set of live workers (shared through the broker)."""
HEARTBEAT_SECONDS = 1.0
"""How often a busy worker renews its leases, which is also how soon it notices a job that was
canceled while the broker was unreachable."""
SCHEDULE_SECONDS = 30.0
BATCH_SECONDS = 0.005
MAX_ERROR_CHARS = 2000
Reason = Literal["canceled", "lost", "shutdown"]
Watch = Callable[[str, Callable[[Event], None]], Awaitable[None]]
"""Subscribes a callback to a channel's live events on every node (`Watchers.watch`)."""


@dataclass
class Running:
    job: Job
    task: asyncio.Task[None]
    reason: Reason | None = None
    settling: bool = False


class Worker:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        broker: Broker,
        watch: Watch,
        runners: Runners,
        *,
        concurrency: int | None = None,
        kinds: list[str] | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.broker = broker
        self._watch = watch
        self.runners = runners
        self.concurrency = concurrency or settings.worker_concurrency
        self.kinds = sorted(kinds or settings.worker_kinds or KINDS)
        self.id = f"{socket.gethostname()}:{os.getpid()}:{new_id('job')[-6:]}"
        self.started = time.time()
        self.processed = 0
        self._running: dict[str, Running] = {}
        self._wake = asyncio.Event()
        self._database_ready = asyncio.Event()
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Start claiming (again, after a `stop`: an app's lifespan may run more than once)."""
        self._stopping = False
        try:
            await self._watch(queue.WAKE_CHANNEL, self._on_event)
        except BrokerUnavailable as exc:
            log.warning("worker_without_wakeups", error=str(exc))
        self._loops = [
            asyncio.create_task(self._claim_loop()),
            asyncio.create_task(self._lease_loop()),
            asyncio.create_task(self._schedule_loop()),
        ]
        log.info(
            "worker_started", worker_id=self.id, kinds=self.kinds, concurrency=self.concurrency
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop claiming, let running jobs finish for `grace` seconds, then hand the rest back
        to the queue (without counting the interrupted attempt)."""
        if self._stopping:
            return
        self._stopping = True
        self._wake.set()
        # The claim loop sees `_stopping` and ends after its current claim: jobs it claimed
        # get their grace period too.
        await asyncio.gather(*self._loops[:1], return_exceptions=True)
        grace = self.settings.job_grace_seconds if grace is None else grace
        tasks = [r.task for r in self._running.values()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for running in list(self._running.values()):
            self._interrupt(running, "shutdown")
        await asyncio.gather(*(r.task for r in self._running.values()), return_exceptions=True)
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await self.database.settle()  # a cancelled loop's last write completes
        with contextlib.suppress(BrokerUnavailable):
            await self.broker.remove_member(WORKERS_KEY, self.id)
        log.info("worker_stopped", worker_id=self.id, processed=self.processed)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kinds": self.kinds,
            "concurrency": self.concurrency,
            "running": len(self._running),
            "processed": self.processed,
            "started_at": self.started,
        }

    # -- wake-ups and cancellation -----------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.event == "job.queued":
            self._wake.set()
        elif event.event == "job.cancel":
            running = self._running.get(str(event.data.get("id")))
            if running is not None:
                self._interrupt(running, "canceled")

    def _interrupt(self, running: Running, reason: Reason) -> None:
        if running.settling or running.task.done():
            return
        running.reason = reason
        running.task.cancel()

    # -- loops ---------------------------------------------------------------------------

    async def _until_database_ready(self) -> bool:
        """Wait until the database answers at the head migration, saying once why not (an
        unmigrated database would otherwise fail every claim, every poll); False if the
        worker is stopped first."""
        told: Problem | None = None
        while not self._stopping:
            problem = await readiness_problem(self.database)
            if problem is None:
                if told is not None:
                    log.info("database_ready", worker_id=self.id)
                self._database_ready.set()
                return True
            if problem != told:
                log.warning("database_not_ready", worker_id=self.id, detail=str(problem))
                told = problem
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.job_poll_seconds)
            self._wake.clear()
        return False

    async def _claim_loop(self) -> None:
        if not await self._until_database_ready():
            return
        backlog = False  # the last claim got all it asked for: more jobs are probably due
        while not self._stopping:
            self._wake.clear()
            if backlog and 0 < self.concurrency - len(self._running) < self.concurrency / 2:
                # Busy with a backlog: let a few more slots free up, so that one claim
                # transaction starts several jobs instead of one per finished job.
                await asyncio.sleep(BATCH_SECONDS)
            free = self.concurrency - len(self._running)
            claimed = 0
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except (SQLAlchemyError, OSError) as exc:
                    log.warning("claim_failed", error=str(exc))
                backlog = claimed == free
            if free > 0 and claimed == free:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.job_poll_seconds)

    async def _claim(self, limit: int) -> int:
        async def claim(db: AsyncSession) -> list[Job]:
            jobs = await queue.claim(
                db,
                worker_id=self.id,
                limit=limit,
                lease_seconds=self.settings.job_lease_seconds,
                kinds=self.kinds,
            )
            for job in jobs:
                db.expunge(job)
            return jobs

        jobs = await self.database.run(claim)
        for job in jobs:
            task = asyncio.create_task(self._execute(job), name=f"job {job.id}")
            self._running[job.id] = Running(job, task)
            task.add_done_callback(functools.partial(self._done, job.id))
        return len(jobs)

    def _done(self, job_id: str, _: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self.processed += 1
        self._wake.set()

    async def _lease_loop(self) -> None:
        """Renew leases every second; re-queue other workers' expired ones; stay listed."""
        await self._database_ready.wait()
        lease = self.settings.job_lease_seconds
        last_reap = last_listed = 0.0
        while True:
            now = time.monotonic()
            try:
                await self._renew()
                if now - last_reap >= min(5.0, lease / 2):
                    last_reap = now
                    await self.database.run(
                        lambda db: queue.reap_expired(db, backoff=self._backoff)
                    )
            except (SQLAlchemyError, OSError) as exc:
                log.warning("lease_renewal_failed", error=str(exc))
            if now - last_listed >= lease / 3:
                last_listed = now
                with contextlib.suppress(BrokerUnavailable):
                    await self.broker.set_members(WORKERS_KEY, {self.id: self.info()}, lease)
            await asyncio.sleep(min(HEARTBEAT_SECONDS, lease / 3))

    async def _renew(self) -> None:
        held = {i: r.job.attempts for i, r in self._running.items() if not r.settling}
        if not held:
            return
        lease = self.settings.job_lease_seconds
        kept = await self.database.run(lambda db: queue.renew(db, self.id, held, lease))
        for job_id in held.keys() - kept:
            running = self._running.get(job_id)
            if running is not None:
                self._interrupt(running, "lost")

    async def _schedule_loop(self) -> None:
        await self._database_ready.wait()
        while True:
            try:
                await run_due_schedules(self.database, self.settings, self.kinds)
            except (SQLAlchemyError, OSError) as exc:
                log.warning("schedule_failed", error=str(exc))
            await asyncio.sleep(SCHEDULE_SECONDS)

    def _backoff(self, attempt: int, retry_after: float | None = None) -> float:
        return backoff_delay(
            attempt,
            base=self.settings.job_backoff_base_seconds,
            cap=self.settings.job_backoff_cap_seconds,
            retry_after=retry_after,
        )

    # -- one attempt -----------------------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        started = time.perf_counter()
        outcome = await self._attempt(job)
        JOBS.labels(job.kind, outcome).inc()
        JOB_DURATION.labels(job.kind).observe(time.perf_counter() - started)

    async def _attempt(self, job: Job) -> str:
        """Run one attempt and record it; the outcome as `jobs_total` counts it."""
        ctx = JobContext(job, self.id, self.database, self.settings, self.runners)
        log.info("job_started", job_id=job.id, kind=job.kind, attempt=job.attempts)
        try:
            result = await self._handle(ctx)
        except asyncio.CancelledError:
            running = self._running.get(job.id)
            reason = running.reason if running else None
            if reason is None:
                raise
            log.info("job_interrupted", job_id=job.id, reason=reason)
            if reason == "shutdown":
                await self._write(
                    lambda db: queue.requeue(
                        db, job, self.id, delay=0, error=None, count_attempt=False
                    )
                )
                return "handed_back"
            return "canceled"
        except Exception as exc:
            return await self._fail(job, exc)
        return await self._complete(ctx, result)

    async def _handle(self, ctx: JobContext) -> Any:
        job = ctx.job
        kind = KINDS.get(job.kind)
        if kind is None:
            raise JobFailed(f"No handler for kind {job.kind!r} here.", type="unknown_kind")
        data = await resolve_input(self.database, job)
        try:
            parsed = parse_input(kind, data)
        except ValidationFailed as exc:
            fields = "; ".join(f"{e.field}: {e.message}" for e in exc.errors or [])
            raise JobFailed(f"Invalid input: {fields}", type="invalid_input") from exc
        async with asyncio.timeout(job.timeout_s):
            return await kind.handler(ctx, parsed)

    async def _complete(self, ctx: JobContext, result: Any) -> str:
        job = ctx.job
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        running = self._running.get(job.id)
        if running is not None:
            running.settling = True

        async def record(db: Any) -> None:
            if await queue.settle(db, job, self.id, status="completed", result=result):
                for write in ctx.writes:
                    await write(db)

        try:
            await self._commit(record)
        except Exception as exc:
            if running is not None:
                running.settling = False
            return await self._fail(job, exc)
        log.info("job_completed", job_id=job.id, kind=job.kind, attempt=job.attempts)
        return "completed"

    async def _fail(self, job: Job, exc: Exception) -> str:
        error, transient, retry_after = _describe(exc, job)
        log.warning(
            "job_attempt_failed",
            job_id=job.id,
            kind=job.kind,
            attempt=job.attempts,
            error_type=error["type"],
            error=error["message"],
            exc_info=not isinstance(exc, (RunnerError, JobFailed, TimeoutError)),
        )
        if transient and job.attempts < job.max_attempts:
            delay = self._backoff(job.attempts, retry_after)
            await self._write(lambda db: queue.requeue(db, job, self.id, delay=delay, error=error))
            return "retrying"
        await self._write(lambda db: queue.settle(db, job, self.id, status="failed", error=error))
        return "failed"

    async def _commit(self, write: Any) -> None:
        await self.database.run(write)

    async def _write(self, write: Any) -> None:
        """A state change that may fail when the database is away: the lease then expires and
        another attempt follows, so the failure is logged, not raised."""
        try:
            await self._commit(write)
        except (SQLAlchemyError, OSError) as exc:
            log.warning("job_state_not_saved", error=str(exc))


def _describe(exc: Exception, job: Job) -> tuple[dict[str, str], bool, float | None]:
    """The job's `error` {type, message}, whether to retry, and the server's `Retry-After`."""
    if isinstance(exc, JobFailed):
        return {"type": exc.type, "message": exc.message}, False, None
    if isinstance(exc, RunnerError):
        kind = "runner_unavailable" if exc.transient else "runner_error"
        return (
            {"type": kind, "message": exc.message[:MAX_ERROR_CHARS]},
            exc.transient,
            exc.retry_after,
        )
    if isinstance(exc, TimeoutError):
        message = f"The attempt ran longer than its timeout of {job.timeout_s:g} s."
        return {"type": "timeout", "message": message}, True, None
    message = str(exc)[:MAX_ERROR_CHARS] or type(exc).__name__
    return {"type": "error", "message": message}, True, None
