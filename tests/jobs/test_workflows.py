"""Workflows through the API on both databases: dependency order, result passing, failure
propagation, validation (cycles, unknown keys and kinds) creating nothing, cancellation,
isolation, paging, idempotency and events on `workflow:{id}`."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import httpx

from conftest import AccountFactory
from jobs_support import channel_events, wait_job
from support import Account, assert_problem

Step = dict[str, Any]
WAIT_SECONDS = 20.0


def step(key: str, prompt: Any, *depends_on: str, options: Any = None) -> Step:
    """An `llm.complete` step on the echo runner."""
    payload = {"prompt": prompt, "runner": "echo", "options": options or {}}
    return {"key": key, "kind": "llm.complete", "input": payload, "depends_on": list(depends_on)}


async def create_workflow(
    client: httpx.AsyncClient, account: Account, steps: list[Step], name: str = "flow"
) -> dict[str, Any]:
    response = await client.post(
        "/v1/workflows", json={"name": name, "steps": steps}, headers=account.headers
    )
    assert response.status_code == 202, response.text
    workflow: dict[str, Any] = response.json()
    return workflow


async def wait_workflow(
    client: httpx.AsyncClient, account: Account, workflow_id: str
) -> dict[str, Any]:
    """Poll `GET /v1/workflows/{id}` until no step is open any more."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        response = await client.get(f"/v1/workflows/{workflow_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        workflow: dict[str, Any] = response.json()
        if workflow["finished_at"] is not None:
            return workflow
        assert time.monotonic() < deadline, f"workflow still {workflow['status']}: {workflow}"
        await asyncio.sleep(0.02)


def at(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp)


def by_key(workflow: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in workflow["steps"]}


async def job(client: httpx.AsyncClient, account: Account, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/jobs/{job_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_steps_run_after_their_dependencies_with_their_results(
    client: httpx.AsyncClient, account: Account
) -> None:
    tools = {"tool_calls": [{"name": "search"}]}
    created = await create_workflow(
        client,
        account,
        [
            step("a", "alpha beta", options=tools),
            step("b", "${steps.a.result.text} again", "a"),
            step(
                "c",
                "${steps.b.result.text} via ${steps.a.result.tool_calls.0.name}",
                "a",
                "b",
                # A whole-value reference keeps the number's type: a string would be refused.
                options={"delay_ms": "${steps.a.result.usage.completion_tokens}"},
            ),
        ],
    )
    assert created["id"].startswith("wfl_")
    assert created["status"] == "queued"
    assert created["progress"] == {"completed": 0, "total": 3, "percent": 0.0}
    assert created["finished_at"] is None
    steps = by_key(created)
    assert [s["status"] for s in steps.values()] == ["queued", "waiting", "waiting"]
    assert steps["c"]["depends_on"] == ["a", "b"]

    done = await wait_workflow(client, account, created["id"])
    assert done["status"] == "completed", done
    assert done["progress"] == {"completed": 3, "total": 3, "percent": 100.0}
    steps = by_key(done)
    assert steps["b"]["result"]["text"] == "alpha beta again"
    assert steps["c"]["result"]["text"] == "alpha beta again via search"
    a, b, c = [await job(client, account, steps[k]["job_id"]) for k in "abc"]
    assert at(b["started_at"]) >= at(a["finished_at"])
    assert at(c["started_at"]) >= at(b["finished_at"])
    assert done["finished_at"] == c["finished_at"]
    assert {a["workflow_id"], b["workflow_id"], c["workflow_id"]} == {created["id"]}


async def test_step_events_are_published_on_the_workflow_channel(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await create_workflow(
        client, account, [step("a", "one"), step("b", "two", "a"), step("c", "three")]
    )
    done = await wait_workflow(client, account, created["id"])
    assert done["status"] == "completed", done
    events = await channel_events(client, account, f"workflow:{created['id']}")
    completed = {e["data"]["id"] for e in events if e["event"] == "job.completed"}
    assert completed == {s["job_id"] for s in done["steps"]}
    queued = [e["data"]["id"] for e in events if e["event"] == "job.queued"]
    assert by_key(done)["b"]["job_id"] in queued  # released once `a` completed


async def test_a_failed_step_cancels_its_dependents_but_not_other_branches(
    client: httpx.AsyncClient, account: Account
) -> None:
    failing = step("bad", "x", options={"fail_first": 5}) | {"max_attempts": 1}
    created = await create_workflow(
        client,
        account,
        [
            failing,
            step("after_bad", "y", "bad"),
            step("after_after", "z", "after_bad"),
            step("good", "fine"),
            step("after_good", "${steps.good.result.text} too", "good"),
        ],
    )
    done = await wait_workflow(client, account, created["id"])
    assert done["status"] == "failed", done
    assert done["progress"] == {"completed": 2, "total": 5, "percent": 40.0}
    steps = by_key(done)
    assert steps["bad"]["status"] == "failed"
    assert steps["bad"]["error"]["type"] == "runner_unavailable"
    for key in ("after_bad", "after_after"):
        assert steps[key]["status"] == "canceled"
        assert steps[key]["error"]["type"] == "dependency_failed"
    assert steps["after_good"]["status"] == "completed"
    assert steps["after_good"]["result"]["text"] == "fine too"


async def test_a_reference_that_does_not_resolve_fails_the_step(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await create_workflow(
        client,
        account,
        [
            step("a", "hello"),
            step("b", "${steps.a.result.nothing}", "a"),
            step("c", "${steps.a.result}", "a"),
        ],
    )
    done = await wait_workflow(client, account, created["id"])
    assert done["status"] == "failed", done
    steps = by_key(done)
    assert steps["b"]["status"] == "failed"
    assert steps["b"]["error"]["type"] == "invalid_input"
    assert "nothing" in steps["b"]["error"]["message"]
    # The whole result is an object, not the prompt string the kind wants.
    assert steps["c"]["error"]["type"] == "invalid_input"
    assert "prompt" in steps["c"]["error"]["message"]


INVALID: list[tuple[list[Step], str]] = [
    ([step("a", "x", "b"), step("b", "x", "a")], "steps.0.depends_on"),
    ([step("a", "x"), step("b", "x", "b")], "steps.1.depends_on"),
    ([step("a", "x", "c"), step("b", "x", "a"), step("c", "x", "b")], "steps.0.depends_on"),
    ([step("a", "x"), step("b", "x", "a", "nope")], "steps.1.depends_on.1"),
    ([step("a", "x"), step("a", "x")], "steps.1.key"),
    ([step("a", "x"), {"key": "b", "kind": "no.such.kind", "input": {}}], "steps.1.kind"),
    ([step("a", "x"), step("b", "")], "steps.1.input.prompt"),
    ([step("a", "x"), step("b", "x"), step("c", "${steps.a.result}", "b")], "steps.2.input.prompt"),
    ([step("a b", "x")], "steps.0.key"),
    ([], "steps"),
]


async def test_invalid_workflows_are_refused_and_create_nothing(
    client: httpx.AsyncClient, account: Account
) -> None:
    for steps, field in INVALID:
        response = await client.post(
            "/v1/workflows", json={"name": "bad", "steps": steps}, headers=account.headers
        )
        problem = assert_problem(response, 422)
        assert field in [e["field"] for e in problem["errors"]], (field, problem)
    cycle = await client.post(
        "/v1/workflows", json={"name": "bad", "steps": INVALID[0][0]}, headers=account.headers
    )
    assert "a → b → a" in cycle.json()["detail"]
    for listing in ("/v1/jobs", "/v1/workflows"):
        response = await client.get(listing, headers=account.headers)
        assert response.status_code == 200
        assert response.json()["data"] == []


async def test_cancel_stops_every_open_step(client: httpx.AsyncClient, account: Account) -> None:
    slow = step("slow", " ".join(["word"] * 50), options={"delay_ms": 200})
    created = await create_workflow(
        client,
        account,
        [slow, step("next", "x", "slow"), step("last", "x", "next"), step("quick", "ok")],
    )
    steps = by_key(created)
    await wait_job(client, account, steps["quick"]["job_id"])
    await wait_job(client, account, steps["slow"]["job_id"], ("running",))

    response = await client.post(f"/v1/workflows/{created['id']}/cancel", headers=account.headers)
    assert response.status_code == 200, response.text
    canceled = response.json()
    assert canceled["status"] == "canceled"
    assert canceled["finished_at"] is not None
    steps = by_key(canceled)
    assert steps["quick"]["status"] == "completed"
    for key in ("slow", "next", "last"):
        assert steps[key]["status"] == "canceled", steps[key]
        assert steps[key]["error"]["type"] == "canceled"

    slow_job = await wait_job(client, account, steps["slow"]["job_id"])
    assert slow_job["status"] == "canceled"
    again = await client.post(f"/v1/workflows/{created['id']}/cancel", headers=account.headers)
    assert_problem(again, 409)
    current = await client.get(f"/v1/workflows/{created['id']}", headers=account.headers)
    assert current.json()["status"] == "canceled"


async def test_workflows_are_private_and_paged_newest_first(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    first = await create_workflow(client, account, [step("a", "one")], name="first")
    second = await create_workflow(client, account, [step("a", "two")], name="second")
    page = await client.get("/v1/workflows", params={"limit": 1}, headers=account.headers)
    assert page.status_code == 200
    body = page.json()
    assert [w["id"] for w in body["data"]] == [second["id"]]
    assert body["data"][0]["steps"][0]["key"] == "a"
    rest = await client.get(
        "/v1/workflows", params={"after": body["next_cursor"]}, headers=account.headers
    )
    assert [w["id"] for w in rest.json()["data"]] == [first["id"]]

    other = await make_account()
    url = f"/v1/workflows/{first['id']}"
    assert_problem(await client.get(url, headers=other.headers), 404)
    assert_problem(await client.post(f"{url}/cancel", headers=other.headers), 404)
    listing = await client.get("/v1/workflows", headers=other.headers)
    assert listing.json()["data"] == []
    mine = await client.get(url, headers=account.headers)
    assert mine.status_code == 200


async def test_idempotency_key_creates_the_workflow_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    headers = {**account.headers, "Idempotency-Key": "flow-1"}
    body = {"name": "once", "steps": [step("a", "x"), step("b", "y", "a")]}
    first = await client.post("/v1/workflows", json=body, headers=headers)
    repeat = await client.post("/v1/workflows", json=body, headers=headers)
    assert first.status_code == repeat.status_code == 202
    assert repeat.json()["id"] == first.json()["id"]
    assert repeat.headers["Idempotent-Replayed"] == "true"
    jobs = await client.get("/v1/jobs", headers=account.headers)
    assert len(jobs.json()["data"]) == 2
