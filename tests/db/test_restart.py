"""PostgreSQL restarted under a steady load of REST calls to a real `agenthub serve`
(docs/errors.md, docs/operations.md): while the database is down every call is answered 503
problem+json, readiness included (never a 500, a hang or a dropped connection); within 5 s of
its return every call succeeds again; no write acknowledged before the outage is lost; the
in-process worker runs jobs again.

The database is a private cluster on a spare port; the shared PostgreSQL is never stopped."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from conftest import TEST_SECRET
from private_servers import PrivatePostgres, postgres_cluster
from processes import Server, clean_env, run, server_process
from realtime_support import sign_up
from steady_load import Answer, Call, SteadyLoad
from support import PROBLEM_JSON, Account, assert_problem

pytestmark = pytest.mark.slow

OUTAGE_SECONDS = 3.0
RECOVERY_SECONDS = 5.0  # the acceptance: service within 5 s of the database returning
CLIENT_TIMEOUT = 10.0
JOB_WAIT_SECONDS = 30.0

# A deferred trigger that makes the server end the connection of the transaction that
# inserts a project of that name, at COMMIT.
CUT_OFF_AT_COMMIT = """
CREATE FUNCTION cut_off() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_terminate_backend(pg_backend_pid());
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER cut_off AFTER INSERT ON projects DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (NEW.name = '{name}') EXECUTE FUNCTION cut_off();
"""


def _env(postgres: PrivatePostgres, workdir: Path) -> dict[str, str]:
    return clean_env(
        AGENTHUB_DATABASE_URL=postgres.url,
        AGENTHUB_SECRET_KEY=TEST_SECRET,
        AGENTHUB_AUTO_MIGRATE="false",
        AGENTHUB_LOG_LEVEL="WARNING",
        AGENTHUB_FILES_DIR=str(workdir / "files"),
        AGENTHUB_MAX_SESSIONS_PER_AGENT_TYPE="0",
        AGENTHUB_JOB_POLL_SECONDS="0.5",
    )


def _calls(account: Account) -> dict[str, Call]:
    """The load: an authenticated read (authentication is its first query), a write, and
    readiness."""
    headers = account.headers

    async def list_sessions(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/v1/sessions", headers=headers)

    async def create_session(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post("/v1/sessions", json={"agent_type": "chat"}, headers=headers)

    async def readiness(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/v1/health/ready")

    return {
        "GET /v1/sessions": list_sessions,
        "POST /v1/sessions": create_session,
        "GET /v1/health/ready": readiness,
    }


def _is_problem_503(answer: Answer) -> bool:
    return answer.status == 503 and answer.content_type == PROBLEM_JSON


async def _all_sessions(client: httpx.AsyncClient, account: Account) -> set[str]:
    found: set[str] = set()
    params = {"limit": "200"}
    while True:
        page = await client.get("/v1/sessions", params=params, headers=account.headers)
        assert page.status_code == 200, page.text
        body = page.json()
        found.update(item["id"] for item in body["data"])
        if not body["has_more"]:
            return found
        params["after"] = body["next_cursor"]


async def _job_completes(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    job = {"kind": "llm.complete", "input": {"prompt": "back again", "runner": "echo"}}
    enqueued = await client.post("/v1/jobs", json=job, headers=account.headers)
    assert enqueued.status_code == 202, enqueued.text
    async with asyncio.timeout(JOB_WAIT_SECONDS):
        while True:
            polled = await client.get(f"/v1/jobs/{enqueued.json()['id']}", headers=account.headers)
            assert polled.status_code == 200, polled.text
            if polled.json()["status"] in ("completed", "failed", "canceled"):
                result: dict[str, Any] = polled.json()
                return result
            await asyncio.sleep(0.1)


@dataclass
class Stack:
    """A private PostgreSQL cluster, migrated, and `agenthub serve` on it."""

    postgres: PrivatePostgres
    server: Server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("restart")
    with postgres_cluster() as postgres:
        env = _env(postgres, workdir)
        migrated = run(["migrate"], workdir, env)
        assert migrated.returncode == 0, migrated.stderr
        with server_process(workdir, env) as server:
            yield Stack(postgres, server)


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.server.http, timeout=CLIENT_TIMEOUT) as client:
        yield client


async def test_postgres_restart_under_load(stack: Stack, client: httpx.AsyncClient) -> None:
    await _restart_under_load(stack.postgres, client, await sign_up(stack.server.http))


async def test_connection_lost_at_commit_is_503(stack: Stack, client: httpx.AsyncClient) -> None:
    """The database drops the connection while the request's unit of work commits, after the
    handler returned: 503 problem+json, not the 201 the handler built, and nothing saved."""
    name = "cut off at commit"
    connection = await asyncpg.connect(stack.postgres.url.replace("+asyncpg", ""))
    try:
        await connection.execute(CUT_OFF_AT_COMMIT.format(name=name))
    finally:
        await connection.close()
    account = await sign_up(stack.server.http)

    cut = await client.post("/v1/projects", json={"name": name}, headers=account.headers)
    assert_problem(cut, 503)
    kept = await client.post("/v1/projects", json={"name": "kept"}, headers=account.headers)
    assert kept.status_code == 201, kept.text
    listed = await client.get("/v1/projects", headers=account.headers)
    assert [p["name"] for p in listed.json()["data"]] == ["kept"]


async def _restart_under_load(
    postgres: PrivatePostgres, client: httpx.AsyncClient, account: Account
) -> None:
    async with SteadyLoad(client, _calls(account)) as load:
        began = time.monotonic()
        assert (await load.recovered(began, RECOVERY_SECONDS)).keys() == load.calls.keys()

        await asyncio.to_thread(postgres.stop, "fast")
        stopped = time.monotonic()
        await asyncio.sleep(OUTAGE_SECONDS)
        restarting = time.monotonic()
        await asyncio.to_thread(postgres.start)
        returned = time.monotonic()
        recovery = await load.recovered(returned, 4 * RECOVERY_SECONDS)
        await asyncio.sleep(1)  # and it stays recovered

    answers = list(load.answers)
    during = load.between(stopped, restarting)
    unavailable = [a for a in answers if _is_problem_503(a)]
    print(
        f"\n{len(answers)} calls, {len(during)} during the {OUTAGE_SECONDS:g} s outage, "
        f"{len(unavailable)} answered 503 problem+json in all"
    )
    for name in load.calls:
        seconds = recovery.get(name)
        figure = f"{seconds:.3f} s" if seconds is not None else "never"
        print(f"  {name}: first success {figure} after `pg_ctl start` returned")

    assert [str(a) for a in answers if not (a.ok or _is_problem_503(a))] == []
    for name in load.calls:
        assert any(a.call == name for a in during), f"no {name} during the outage"
    assert [str(a) for a in during if not _is_problem_503(a)] == []
    assert recovery.keys() == load.calls.keys(), recovery
    assert max(recovery.values()) <= RECOVERY_SECONDS, recovery
    settled = returned + max(recovery.values())
    assert [str(a) for a in answers if a.sent >= settled and not a.ok] == []

    creates = [a for a in answers if a.call == "POST /v1/sessions"]
    acknowledged = {a.data["session"]["id"] for a in creates if a.ok}
    listed = await _all_sessions(client, account)
    assert acknowledged <= listed, acknowledged - listed
    # A create cut off by the shutdown may have committed without its 201; no more than those.
    cut_off = [a for a in creates if not a.ok and a not in during]
    assert len(listed - acknowledged) <= len(cut_off), (listed - acknowledged, cut_off)

    job = await _job_completes(client, account)
    assert job["status"] == "completed", job
    assert job["result"]["text"] == "back again"
