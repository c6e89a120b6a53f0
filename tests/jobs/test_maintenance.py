"""The maintenance kinds run for real by the in-process worker, on both databases: the purge of
soft-deleted sessions and accounts past retention, of orphaned file content and of expired
idempotency records; the cleanup of old finished jobs; the planner-statistics refresh.

Data is created through the API; only its age is set in the database (waiting 30 days is not an
option), and so is the age of files on disk.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select, update

from agenthub.config import Settings
from agenthub.core.ids import new_id
from agenthub.db.base import utcnow
from agenthub.db.models.auth import User
from agenthub.db.models.idempotency import IdempotencyRecord
from agenthub.db.models.jobs import FINAL_STATUSES, Job
from agenthub.db.models.sessions import ChatSession, Message
from agenthub.files.storage import key_for
from agenthub.jobs import service
from agenthub.jobs.registry import KINDS
from conftest import AccountFactory
from jobs_support import create_job, wait_job
from session_support import new_session, post_message
from support import Account

TWO_HOURS = 2 * 3600


async def run_kind(app: FastAPI, name: str) -> dict[str, Any]:
    """Enqueue `name` as the scheduler does, wait for the in-process worker to finish it and
    return its result. System jobs belong to no user, so the job row is polled."""
    async with app.state.database.transaction() as db:
        job = await service.enqueue(
            db, service.NewJob(kind=name), default_timeout=60, kind=KINDS[name]
        )
    deadline = time.monotonic() + 20
    while True:
        async with app.state.database.transaction() as db:
            row = await db.get(Job, job.id)
        assert row is not None
        if row.status in FINAL_STATUSES:
            break
        assert time.monotonic() < deadline, f"{name} still {row.status}"
        await asyncio.sleep(0.02)
    assert row.status == "completed", row.error
    assert row.user_id is None
    result: dict[str, Any] = row.result
    return result


async def backdate(app: FastAPI, model: Any, where: Any, **ages: timedelta) -> None:
    """Move timestamp columns of the matching rows into the past by the given ages."""
    now = utcnow()
    async with app.state.database.transaction() as db:
        await db.execute(
            update(model).where(where).values({col: now - age for col, age in ages.items()})
        )


def age_file(path: Path, seconds: float = TWO_HOURS) -> None:
    """Make a file look last written `seconds` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


async def upload(client: httpx.AsyncClient, account: Account, content: bytes) -> dict[str, Any]:
    response = await client.post(
        "/v1/files",
        files=[("files", ("notes.txt", content, "text/plain"))],
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    item: dict[str, Any] = response.json()["data"][0]
    return item


def stored_path(settings: Settings, file_id: str) -> Path:
    return settings.files_dir / key_for(file_id)


async def count(app: FastAPI, stmt: Any) -> int:
    async with app.state.database.transaction() as db:
        return int(await db.scalar(stmt) or 0)


async def test_sessions_in_the_trash_past_retention_are_purged_with_their_messages(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    old = await new_session(client, account, title="old")
    recent = await new_session(client, account, title="recent")
    live = await new_session(client, account, title="live")
    for chat in (old, recent, live):
        await post_message(client, account, chat["id"], "first")
        await post_message(client, account, chat["id"], "second")
    for chat in (old, recent):
        response = await client.delete(f"/v1/sessions/{chat['id']}", headers=account.headers)
        assert response.status_code == 204, response.text
    await backdate(app, ChatSession, ChatSession.id == old["id"], deleted_at=timedelta(days=31))
    await backdate(app, ChatSession, ChatSession.id == recent["id"], deleted_at=timedelta(days=29))

    result = await run_kind(app, "maintenance.purge_deleted")

    assert result == {"sessions": 1, "accounts": 0, "idempotency_keys": 0, "orphan_files": 0}
    gone = await client.get(f"/v1/sessions/{old['id']}", headers=account.headers)
    assert gone.status_code == 404
    trash = await client.get("/v1/sessions", params={"status": "deleted"}, headers=account.headers)
    assert [s["id"] for s in trash.json()["data"]] == [recent["id"]]
    for chat in (recent, live):
        messages = await client.get(f"/v1/sessions/{chat['id']}/messages", headers=account.headers)
        assert [m["content"] for m in messages.json()["data"]] == ["first", "second"]
    assert await count(app, select(func.count()).where(Message.session_id == old["id"])) == 0


async def test_accounts_deleted_past_retention_are_purged_with_their_data_and_files(
    app: FastAPI, client: httpx.AsyncClient, make_account: AccountFactory, settings: Settings
) -> None:
    old, recent, live = await make_account(), await make_account(), await make_account()
    files = {}
    for user in (old, recent, live):
        await new_session(client, user)
        files[user.id] = await upload(client, user, f"notes of {user.email}".encode())
        # Uploaded well before the account was deleted, as a real purged account's files are.
        age_file(stored_path(settings, files[user.id]["id"]))
    for user in (old, recent):
        response = await client.delete("/v1/user", headers=user.headers)
        assert response.status_code == 204, response.text
    await backdate(app, User, User.id == old.id, deleted_at=timedelta(days=31))

    result = await run_kind(app, "maintenance.purge_deleted")

    assert result == {"sessions": 0, "accounts": 1, "idempotency_keys": 0, "orphan_files": 1}
    assert await count(app, select(func.count()).where(User.id == old.id)) == 0
    assert await count(app, select(func.count()).where(ChatSession.user_id == old.id)) == 0
    assert not stored_path(settings, files[old.id]["id"]).exists()
    # Deleted a day ago: still restorable by an administrator, data and files intact.
    assert await count(app, select(func.count()).where(ChatSession.user_id == recent.id)) == 1
    assert stored_path(settings, files[recent.id]["id"]).exists()
    download = await client.get(f"/v1/files/{files[live.id]['id']}/content", headers=live.headers)
    assert download.status_code == 200, download.text
    assert download.content == f"notes of {live.email}".encode()


async def test_orphaned_content_older_than_an_hour_is_removed(
    app: FastAPI, client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    kept = await upload(client, account, b"referenced content")
    age_file(stored_path(settings, kept["id"]))

    def leftover(path: Path, seconds: float) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"left behind")
        age_file(path, seconds)
        return path

    # Content whose upload never committed, and temporary parts of an interrupted upload.
    old_orphan = leftover(stored_path(settings, new_id("fil")), TWO_HOURS)
    fresh_orphan = leftover(stored_path(settings, new_id("fil")), 60)
    old_part = leftover(settings.files_dir / ".tmp" / "tmpabc.part", TWO_HOURS)
    fresh_part = leftover(settings.files_dir / ".tmp" / "tmpdef.part", 60)
    # Not a name the storage gives: not ours to remove.
    stranger = leftover(settings.files_dir / "ab" / "README", TWO_HOURS)

    result = await run_kind(app, "maintenance.purge_deleted")

    assert result["orphan_files"] == 2
    assert not old_orphan.exists()
    assert not old_part.exists()
    assert fresh_orphan.exists() and fresh_part.exists() and stranger.exists()
    download = await client.get(f"/v1/files/{kept['id']}/content", headers=account.headers)
    assert download.content == b"referenced content"


async def test_idempotency_records_past_their_day_are_purged(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    for key in ("yesterday", "today"):
        response = await client.post(
            "/v1/projects",
            json={"name": key},
            headers={**account.headers, "Idempotency-Key": key},
        )
        assert response.status_code == 201, response.text
    await backdate(
        app, IdempotencyRecord, IdempotencyRecord.key == "yesterday", created_at=timedelta(hours=25)
    )

    result = await run_kind(app, "maintenance.purge_deleted")

    assert result["idempotency_keys"] == 1
    async with app.state.database.transaction() as db:
        keys = set(await db.scalars(select(IdempotencyRecord.key)))
    assert keys == {"today"}
    replay = await client.post(
        "/v1/projects",
        json={"name": "today"},
        headers={**account.headers, "Idempotency-Key": "today"},
    )
    assert replay.headers.get("Idempotent-Replayed") == "true"


def echo(**options: Any) -> dict[str, Any]:
    return {"prompt": "hello", "runner": "echo", "options": options}


async def test_clean_jobs_deletes_only_jobs_finished_before_the_retention(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    later = (utcnow() + timedelta(hours=1)).isoformat()
    completed = await create_job(client, account, "llm.complete", echo())
    failed = await create_job(client, account, "llm.complete", echo(fail_first=5), max_attempts=1)
    canceled = await create_job(client, account, "llm.complete", echo(), run_at=later)
    recent = await create_job(client, account, "llm.complete", echo())
    waiting = await create_job(client, account, "llm.complete", echo(), run_at=later)
    response = await client.post(f"/v1/jobs/{canceled['id']}/cancel", headers=account.headers)
    assert response.status_code == 200, response.text
    for job in (completed, failed, recent):
        await wait_job(client, account, job["id"])
    old = [completed["id"], failed["id"], canceled["id"]]
    await backdate(
        app, Job, Job.id.in_(old), finished_at=timedelta(days=8), created_at=timedelta(days=8)
    )
    await backdate(app, Job, Job.id == waiting["id"], created_at=timedelta(days=8))

    result = await run_kind(app, "maintenance.clean_jobs")

    assert result == {"deleted": 3}
    for job_id in old:
        gone = await client.get(f"/v1/jobs/{job_id}", headers=account.headers)
        assert gone.status_code == 404
    assert (await wait_job(client, account, recent["id"]))["status"] == "completed"
    kept = await client.get(f"/v1/jobs/{waiting['id']}", headers=account.headers)
    assert kept.json()["status"] == "queued"


async def test_optimize_refreshes_statistics_on_either_database(
    app: FastAPI, settings: Settings, client: httpx.AsyncClient, account: Account
) -> None:
    result = await run_kind(app, "maintenance.optimize")
    if settings.is_sqlite:
        assert result == {"dialect": "sqlite", "statement": "PRAGMA optimize"}
    else:
        assert result == {"dialect": "postgresql", "statement": "ANALYZE"}
    # A system job belongs to nobody: no user sees it.
    listed = await client.get("/v1/jobs", headers=account.headers)
    assert listed.json()["data"] == []
