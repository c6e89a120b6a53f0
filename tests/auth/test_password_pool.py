"""Password hashing runs on a bounded pool: a burst of sign-ins waits its turn or gets 503 with
Retry-After, and other requests are served meanwhile."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from agenthub.core.errors import ServiceUnavailable
from agenthub.core.security import PasswordHasher
from conftest import asgi_client, custom_app, make_settings
from support import PASSWORD, register


async def test_calls_beyond_the_threads_and_queue_are_refused_with_retry_after() -> None:
    hasher = PasswordHasher(time_cost=2, memory_kib=8192, threads=1, queue=1)
    try:
        stored = hasher.hash(PASSWORD)
        calls = [asyncio.create_task(hasher.matches(PASSWORD, stored)) for _ in range(4)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        hasher.close()
    assert outcomes[:2] == [True, True]  # one running, one waiting
    for refused in outcomes[2:]:
        assert isinstance(refused, ServiceUnavailable)
        assert int(refused.headers["Retry-After"]) >= 1


async def test_a_burst_of_logins_is_served_or_told_when_to_retry(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        custom_app(
            database_url,
            tmp_path,
            password_time_cost=2,
            password_memory_kib=16384,
            password_hash_threads=1,
            password_hash_queue=2,
            login_limit_ip="1000/minute",
            login_limit_account="1000/minute",
        ) as app,
        asgi_client(app) as client,
    ):
        reader = await register(client, "reader@example.com")
        emails = [f"burst-{n}@example.com" for n in range(12)]
        for email in emails:
            await register(client, email)

        async def read() -> int:
            return (await client.get("/v1/user/profile", headers=reader.headers)).status_code

        logins = [
            client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            for email in emails
        ]
        answers, reads = await asyncio.gather(
            asyncio.gather(*logins), asyncio.gather(*(read() for _ in range(10)))
        )
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 503}
    assert 200 in statuses and 503 in statuses
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["content-type"] == "application/problem+json"
            assert int(answer.headers["Retry-After"]) >= 1
    assert reads == [200] * 10  # reads are not refused by the burst


async def test_logins_waiting_for_the_hasher_hold_no_database_connection(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More logins wait for a turn at the hasher than the pool has connections, and a read
    is still served at once: no login holds a connection while it waits."""
    async with (
        custom_app(
            database_url,
            tmp_path,
            db_pool_size=2,
            db_max_overflow=0,
            db_timeout_seconds=2,
            login_limit_ip="1000/minute",
            login_limit_account="1000/minute",
        ) as app,
        asgi_client(app) as client,
    ):
        reader = await register(client, "reader@example.com")
        emails = [f"waiting-{n}@example.com" for n in range(6)]
        for email in emails:
            await register(client, email)
        hasher: PasswordHasher = app.state.hasher
        checked, turn, all_waiting = hasher.matches, asyncio.Event(), asyncio.Event()
        waiting: list[str] = []

        async def matches_in_turn(password: str, hashed: str | None) -> bool:
            waiting.append(password)
            if len(waiting) == len(emails):
                all_waiting.set()
            await turn.wait()
            return await checked(password, hashed)

        monkeypatch.setattr(hasher, "matches", matches_in_turn)
        logins = [
            asyncio.create_task(
                client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            )
            for email in emails
        ]
        await asyncio.wait_for(all_waiting.wait(), 10)
        pool = app.state.database.engine.sync_engine.pool
        assert pool.checkedout() == 0
        profile = await client.get("/v1/user/profile", headers=reader.headers)
        assert profile.status_code == 200
        turn.set()
        assert [(await login).status_code for login in logins] == [200] * len(emails)


@pytest.mark.parametrize("threads", [0, -1])
def test_the_thread_count_must_be_positive(threads: int, database_url: str, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        make_settings(database_url, tmp_path, password_hash_threads=threads)
