"""Jobs through the API on both databases: status flow and events, retries, timeouts,
cancellation, dependencies, bulk actions, statistics, isolation and validation."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from agenthub.app import create_app
from agenthub.config import Settings
from conftest import AccountFactory, asgi_client, make_settings, started
from jobs_support import channel_events, create_job, wait_event, wait_job
from support import Account, assert_problem, register

LONG_PROMPT = " ".join(f"word{i}" for i in range(200))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Retries within milliseconds, so retry behaviour is seen without waiting."""
    return make_settings(
        database_url, tmp_path, job_backoff_base_seconds=0.01, job_backoff_cap_seconds=0.05
    )


def echo(prompt: str = "hello there world", **options: Any) -> dict[str, Any]:
    return {"prompt": prompt, "runner": "echo", "options": options}


def event_names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events if e["event"] != "message.delta"]


def parse_ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def test_job_runs_to_completion_with_its_events(
    client: httpx.AsyncClient, account: Account
) -> None:
    job = await create_job(client, account, "llm.complete", echo())
    assert job["status"] == "queued"
    assert job["id"].startswith("job_")
    assert job["attempts"] == 0
    done = await wait_job(client, account, job["id"])
    assert done["status"] == "completed", done
    assert done["result"]["text"] == "hello there world"
    assert done["result"]["usage"]["completion_tokens"] == 3
    assert done["attempts"] == 1
    assert done["error"] is None
    assert done["progress"] == {"percent": 100.0, "message": None}  # none reported: still done
    assert done["worker_id"]
    assert done["duration_ms"] is not None
    assert parse_ts(done["created_at"]) <= parse_ts(done["started_at"])
    assert parse_ts(done["started_at"]) <= parse_ts(done["finished_at"])
    events = await channel_events(client, account, f"job:{job['id']}")
    assert event_names(events) == ["job.queued", "job.started", "job.completed"]
    deltas = "".join(e["data"]["delta"] for e in events if e["event"] == "message.delta")
    assert deltas == "hello there world"
    assert events[-1]["data"]["result"]["text"] == "hello there world"
    assert events[-1]["data"]["progress"]["percent"] == 100


async def test_an_app_started_again_runs_jobs_again(settings: Settings) -> None:
    """A second lifespan of the same app (as a test client may run) starts its worker anew,
    and stops it again: no loop of the first run keeps polling."""
    app = create_app(settings)
    async with started(app):
        pass
    async with started(app), asgi_client(app) as client:
        account = await register(client, f"again-{secrets.token_hex(4)}@example.com")
        job = await create_job(client, account, "llm.complete", echo())
        assert (await wait_job(client, account, job["id"], within=5))["status"] == "completed"


async def test_failed_attempt_is_retried_then_succeeds(
    client: httpx.AsyncClient, account: Account
) -> None:
    job = await create_job(client, account, "llm.complete", echo(fail_first=1))
    done = await wait_job(client, account, job["id"])
    assert done["status"] == "completed", done
    assert done["attempts"] == 2
    names = event_names(await channel_events(client, account, f"job:{job['id']}"))
    assert names == ["job.queued", "job.started", "job.retrying", "job.started", "job.completed"]


async def test_retries_exhausted_fail_with_the_error(
    client: httpx.AsyncClient, account: Account
) -> None:
    job = await create_job(client, account, "llm.complete", echo(fail_first=5), max_attempts=2)
    done = await wait_job(client, account, job["id"])
    assert done["status"] == "failed"
    assert done["attempts"] == 2
    assert done["error"]["type"] == "runner_unavailable"
    assert "fail" in done["error"]["message"].lower()
    assert done["result"] is None
    names = event_names(await channel_events(client, account, f"job:{job['id']}"))
    assert names[-1] == "job.failed"
    assert names.count("job.retrying") == 1


async def test_an_attempt_past_its_timeout_fails(
    client: httpx.AsyncClient, account: Account
) -> None:
    job = await create_job(
        client,
        account,
        "llm.complete",
        echo(LONG_PROMPT, delay_ms=50),
        timeout_s=0.3,
        max_attempts=1,
    )
    done = await wait_job(client, account, job["id"])
    assert done["status"] == "failed"
    assert done["error"]["type"] == "timeout"


async def test_cancel_interrupts_a_running_job_within_a_second(
    client: httpx.AsyncClient, account: Account
) -> None:
    job = await create_job(client, account, "llm.complete", echo(LONG_PROMPT, delay_ms=100))
    await wait_job(client, account, job["id"], ("running",))
    await wait_event(client, account, f"job:{job['id']}", "message.delta")
    response = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=account.headers)
    canceled_at = datetime.now(UTC)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "canceled"
    await asyncio.sleep(1.5)
    events = await channel_events(client, account, f"job:{job['id']}")
    deltas = [e for e in events if e["event"] == "message.delta"]
    assert len(deltas) < 100, "the run went on after the cancel"
    assert parse_ts(deltas[-1]["ts"]) < canceled_at + timedelta(seconds=1)
    assert event_names(events)[-1] == "job.canceled"
    final = await wait_job(client, account, job["id"])
    assert final["status"] == "canceled"
    assert final["result"] is None
    again = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=account.headers)
    assert_problem(again, 409)


async def test_run_at_needs_an_offset_and_is_answered_in_utc(
    client: httpx.AsyncClient, account: Account
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    naive = {
        "kind": "llm.complete",
        "input": echo(),
        "run_at": later.replace(tzinfo=None).isoformat(),
    }
    problem = assert_problem(
        await client.post("/v1/jobs", json=naive, headers=account.headers), 422
    )
    assert problem["errors"][0]["field"] == "run_at"
    offset = later.astimezone(timezone(timedelta(hours=2)))
    job = await create_job(client, account, "llm.complete", echo(), run_at=offset.isoformat())
    assert job["run_at"].endswith("Z")
    assert datetime.fromisoformat(job["run_at"]) == later
    read = await client.get(f"/v1/jobs/{job['id']}", headers=account.headers)
    assert read.json()["run_at"] == job["run_at"]


async def test_retry_runs_a_canceled_job_again(client: httpx.AsyncClient, account: Account) -> None:
    job = await create_job(
        client,
        account,
        "llm.complete",
        echo(),
        run_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    )
    canceled = await client.post(f"/v1/jobs/{job['id']}/cancel", headers=account.headers)
    assert canceled.json()["status"] == "canceled"
    retried = await client.post(f"/v1/jobs/{job['id']}/retry", headers=account.headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "queued"
    assert retried.json()["attempts"] == 0
    done = await wait_job(client, account, job["id"])
    assert done["status"] == "completed"
    twice = await client.post(f"/v1/jobs/{job['id']}/retry", headers=account.headers)
    assert_problem(twice, 409)


async def test_dependencies_run_first_and_failure_cancels_dependents(
    client: httpx.AsyncClient, account: Account
) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat()
    first = await create_job(client, account, "llm.complete", echo("first"), run_at=soon)
    second = await create_job(
        client, account, "llm.complete", echo("second"), depends_on=[first["id"]]
    )
    assert second["status"] == "waiting"
    assert second["depends_on"] == [first["id"]]
    done_first = await wait_job(client, account, first["id"])
    done_second = await wait_job(client, account, second["id"])
    assert done_second["status"] == "completed"
    assert parse_ts(done_second["started_at"]) >= parse_ts(done_first["finished_at"])

    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    broken = await create_job(
        client, account, "llm.complete", echo(fail_first=9), max_attempts=1, run_at=soon
    )
    child = await create_job(client, account, "llm.complete", echo(), depends_on=[broken["id"]])
    grandchild = await create_job(client, account, "llm.complete", echo(), depends_on=[child["id"]])
    assert (await wait_job(client, account, broken["id"]))["status"] == "failed"
    for dependent in (child, grandchild):
        final = await wait_job(client, account, dependent["id"])
        assert final["status"] == "canceled"
        assert final["error"]["type"] == "dependency_failed"
        assert final["attempts"] == 0


async def test_higher_priority_runs_first(client: httpx.AsyncClient, account: Account) -> None:
    later = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    low = await create_job(client, account, "llm.complete", echo("low"), run_at=later)
    high = await create_job(
        client, account, "llm.complete", echo("high"), run_at=later, priority=10
    )
    done_low = await wait_job(client, account, low["id"])
    done_high = await wait_job(client, account, high["id"])
    assert parse_ts(done_high["started_at"]) <= parse_ts(done_low["started_at"])
    assert parse_ts(done_low["started_at"]) >= parse_ts(later)


async def test_list_filters_and_bulk_actions(client: httpx.AsyncClient, account: Account) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    parked = [
        (await create_job(client, account, "llm.complete", echo(), run_at=later))["id"]
        for _ in range(3)
    ]
    quick = await create_job(client, account, "llm.complete", echo())
    await wait_job(client, account, quick["id"])
    queued = await client.get("/v1/jobs", params={"status": "queued"}, headers=account.headers)
    assert sorted(j["id"] for j in queued.json()["data"]) == sorted(parked)
    by_kind = await client.get("/v1/jobs", params={"kind": "llm.complete"}, headers=account.headers)
    assert len(by_kind.json()["data"]) == 4

    bulk = await client.post(
        "/v1/jobs/bulk",
        json={"action": "cancel", "ids": [*parked, quick["id"], "job_missing"]},
        headers=account.headers,
    )
    assert bulk.status_code == 200, bulk.text
    outcome = bulk.json()
    assert outcome["succeeded"] == 3 and outcome["failed"] == 2
    codes = {r["id"]: r["status"] for r in outcome["results"]}
    assert codes[quick["id"]] == 409 and codes["job_missing"] == 404
    deleted = await client.post(
        "/v1/jobs/bulk", json={"action": "delete", "ids": parked}, headers=account.headers
    )
    assert deleted.json()["succeeded"] == 3
    remaining = await client.get("/v1/jobs", headers=account.headers)
    assert [j["id"] for j in remaining.json()["data"]] == [quick["id"]]


async def test_stats_and_queue(client: httpx.AsyncClient, account: Account) -> None:
    done = await create_job(client, account, "llm.complete", echo())
    await wait_job(client, account, done["id"])
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    await create_job(client, account, "llm.complete", echo(), run_at=later)
    stats = (await client.get("/v1/jobs/stats", headers=account.headers)).json()
    assert stats["by_status"] == {"completed": 1, "queued": 1}
    assert stats["by_kind"]["llm.complete"] == {"completed": 1, "queued": 1}
    assert stats["throughput"]["completed_last_minute"] == 1
    assert stats["run_ms"]["p50"] is not None
    queue = (await client.get("/v1/jobs/queue", headers=account.headers)).json()
    assert queue["queued"] == 1 and queue["running"] == 0
    assert queue["kinds"][0]["kind"] == "llm.complete"
    assert len(queue["workers"]) >= 1
    assert queue["workers"][0]["kinds"]


async def test_admin_cleanup_deletes_old_finished_jobs(
    client: httpx.AsyncClient, account: Account, admin: Account
) -> None:
    job = await create_job(client, account, "llm.complete", echo())
    await wait_job(client, account, job["id"])
    flow = await client.post(
        "/v1/workflows",
        json={"name": "one", "steps": [{"key": "a", "kind": "llm.complete", "input": echo()}]},
        headers=account.headers,
    )
    assert flow.status_code == 202, flow.text
    await wait_job(client, account, flow.json()["steps"][0]["job_id"])
    forbidden = await client.post("/v1/admin/jobs/cleanup", json={}, headers=account.headers)
    assert_problem(forbidden, 403)
    kept = await client.post("/v1/admin/jobs/cleanup", json={}, headers=admin.headers)
    assert kept.json() == {"deleted": 0}
    purged = await client.post(
        "/v1/admin/jobs/cleanup", json={"older_than_days": 0}, headers=admin.headers
    )
    assert purged.json() == {"deleted": 2}
    gone = await client.get(f"/v1/jobs/{job['id']}", headers=account.headers)
    assert_problem(gone, 404)
    emptied = await client.get(f"/v1/workflows/{flow.json()['id']}", headers=account.headers)
    assert_problem(emptied, 404)


async def test_another_users_job_is_not_found(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    job = await create_job(client, account, "llm.complete", echo())
    other = await make_account()
    for method, path in (
        ("GET", f"/v1/jobs/{job['id']}"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
        ("POST", f"/v1/jobs/{job['id']}/retry"),
        ("DELETE", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/realtime/channels/job:{job['id']}/history"),
    ):
        response = await client.request(method, path, headers=other.headers)
        assert_problem(response, 404)
    listed = await client.get("/v1/jobs", headers=other.headers)
    assert listed.json()["data"] == []
    foreign_dependency = await client.post(
        "/v1/jobs",
        json={"kind": "llm.complete", "input": echo(), "depends_on": [job["id"]]},
        headers=other.headers,
    )
    body = assert_problem(foreign_dependency, 422)
    assert body["errors"][0]["field"] == "depends_on.0"


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"kind": "no.such.kind", "input": {}}, "kind"),
    ({"kind": "llm.complete", "input": {}}, "input.prompt"),
    ({"kind": "llm.complete", "input": {"prompt": ""}}, "input.prompt"),
    ({"kind": "llm.complete", "input": {"prompt": "x", "runner": "gpt"}}, "input.runner"),
    ({"kind": "llm.complete", "input": {"prompt": "x", "extra": 1}}, "input.extra"),
    ({"kind": "llm.complete", "input": {"prompt": "x"}, "max_attempts": 0}, "max_attempts"),
    ({"kind": "llm.complete", "input": {"prompt": "x"}, "depends_on": ["a", "a"]}, "depends_on"),
    ({"kind": "llm.complete", "input": {"prompt": "x"}, "depends_on": ["job_x"]}, "depends_on.0"),
    ({"kind": "llm.complete", "input": "text"}, "input"),
]


async def test_invalid_jobs_are_422_and_create_nothing(
    client: httpx.AsyncClient, account: Account
) -> None:
    for body, field in INVALID:
        response = await client.post("/v1/jobs", json=body, headers=account.headers)
        problem = assert_problem(response, 422)
        assert any(e["field"].startswith(field) for e in problem["errors"]), (body, problem)
    listed = await client.get("/v1/jobs", headers=account.headers)
    assert listed.json()["data"] == []


async def test_jobs_need_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/jobs"), 401)
    assert_problem(await client.post("/v1/jobs", json={"kind": "llm.complete"}), 401)
