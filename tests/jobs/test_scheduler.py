"""The maintenance schedule on both databases: several schedulers at once (as several worker
processes run them) enqueue each due run exactly once, a fresh database runs nothing before its
first interval, a run still open is not joined by another, and scheduled kinds cannot be
created through the API.

The app's own worker is off, so only the schedulers driven here act.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, select, update

from agenthub.db.base import utcnow
from agenthub.db.engine import Database
from agenthub.db.models.jobs import Job, JobSchedule
from agenthub.jobs.registry import KINDS
from agenthub.jobs.scheduler import run_due_schedules
from agenthub.jobs.service import cancel
from conftest import custom_app
from support import Account, assert_problem, error_fields

INTERVAL = 600.0
SCHEDULERS = 4
MAINTENANCE = {"maintenance.clean_jobs", "maintenance.optimize", "maintenance.purge_deleted"}


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    async with custom_app(
        database_url, tmp_path, worker_enabled=False, maintenance_interval_seconds=INTERVAL
    ) as application:
        # The previous test's in-process worker may have scheduled after its tables were
        # emptied (conftest empties them before the worker stops): start from none.
        async with application.state.database.transaction() as db:
            await db.execute(delete(JobSchedule))
        yield application


@pytest.fixture
async def databases(app: FastAPI) -> AsyncIterator[list[Database]]:
    """One connection pool per scheduler, as separate worker processes have."""
    pools = [Database(app.state.settings) for _ in range(SCHEDULERS)]
    yield pools
    for pool in pools:
        await pool.dispose()


async def schedule_all(app: FastAPI, databases: list[Database]) -> None:
    """Every scheduler checks every kind at the same time."""
    settings = app.state.settings
    await asyncio.gather(*(run_due_schedules(db, settings, list(KINDS)) for db in databases))


async def schedules(app: FastAPI) -> dict[str, JobSchedule]:
    async with app.state.database.transaction() as db:
        return {row.name: row for row in await db.scalars(select(JobSchedule))}


async def enqueued(app: FastAPI) -> Counter[str]:
    async with app.state.database.transaction() as db:
        jobs = (await db.scalars(select(Job))).all()
    assert all(job.user_id is None and job.status == "queued" for job in jobs)
    return Counter(job.kind for job in jobs)


async def make_due(app: FastAPI) -> None:
    async with app.state.database.transaction() as db:
        await db.execute(update(JobSchedule).values(next_run_at=utcnow() - timedelta(seconds=1)))


async def test_a_fresh_database_runs_nothing_before_the_first_interval(
    app: FastAPI, databases: list[Database]
) -> None:
    before = utcnow()
    await schedule_all(app, databases)
    after = utcnow()

    rows = await schedules(app)
    assert set(rows) == MAINTENANCE
    interval = timedelta(seconds=INTERVAL)
    for row in rows.values():
        assert before + interval <= row.next_run_at <= after + interval
    assert await enqueued(app) == Counter()


async def test_a_due_run_is_enqueued_once_however_many_schedulers_race(
    app: FastAPI, databases: list[Database]
) -> None:
    await schedule_all(app, databases)
    await make_due(app)

    before = utcnow()
    await schedule_all(app, databases)
    assert await enqueued(app) == Counter(MAINTENANCE)
    for row in (await schedules(app)).values():
        assert row.next_run_at >= before + timedelta(seconds=INTERVAL)

    await schedule_all(app, databases)  # not due again yet
    assert await enqueued(app) == Counter(MAINTENANCE)


async def test_a_run_still_open_is_not_joined_by_another(
    app: FastAPI, databases: list[Database]
) -> None:
    await schedule_all(app, databases)
    await make_due(app)
    await schedule_all(app, databases)
    await make_due(app)

    await schedule_all(app, databases)
    assert await enqueued(app) == Counter(MAINTENANCE)

    async with app.state.database.transaction() as db:
        for job in (await db.scalars(select(Job))).all():
            await cancel(db, job)
    await make_due(app)
    await schedule_all(app, databases)
    async with app.state.database.transaction() as db:
        statuses = Counter((await db.execute(select(Job.kind, Job.status))).all())
    assert statuses == Counter(
        {(kind, status): 1 for kind in MAINTENANCE for status in ("canceled", "queued")}
    )


async def test_scheduled_kinds_cannot_be_created_through_the_api(
    client: httpx.AsyncClient, account: Account
) -> None:
    for kind in sorted(MAINTENANCE):
        response = await client.post(
            "/v1/jobs", json={"kind": kind, "input": {}}, headers=account.headers
        )
        problem = assert_problem(response, 422)
        assert error_fields(problem) == {"kind"}
        assert "maintenance." not in problem["errors"][0]["message"]
    listed = await client.get("/v1/jobs", headers=account.headers)
    assert listed.json()["data"] == []
