"""The idea-to-spec app through the API on both databases: generate, follow the job, read the
specification; retries, history with full-text `q` and status, isolation, validation and
idempotent replays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import AccountFactory, asgi_client, custom_app
from ideas_support import generate, generated, get_idea
from jobs_support import channel_events, create_job, wait_job
from support import (
    Account,
    assert_iso_utc,
    assert_problem,
    error_fields,
    ids,
    list_page,
    register,
)

IDEA_FIELDS = {
    "id",
    "idea",
    "options",
    "title",
    "spec",
    "status",
    "job_id",
    "attempts",
    "error",
    "progress",
    "created_at",
    "started_at",
    "finished_at",
    "duration_ms",
}
HABITS = "A habit tracker for remote teams\nMembers log habits daily and see their streaks."


async def test_generate_stores_a_specification(client: httpx.AsyncClient, account: Account) -> None:
    accepted = await generate(client, account, HABITS)
    assert set(accepted) == {"job_id", "idea_id"}
    assert accepted["idea_id"].startswith("ide_")

    job = await wait_job(client, account, accepted["job_id"])
    assert job["status"] == "completed", job
    assert job["kind"] == "spec.generate"
    assert job["result"]["idea_id"] == accepted["idea_id"]
    assert job["result"]["title"] == "A habit tracker for remote teams"
    assert job["result"]["sections"] == 1
    assert job["result"]["usage"]["completion_tokens"] > 0
    # The handler last reported 90 %: a finished job reads 100.
    assert job["progress"] == {"percent": 100.0, "message": None}

    idea = await get_idea(client, account, accepted["idea_id"])
    assert set(idea) == IDEA_FIELDS
    assert idea["idea"] == HABITS
    assert idea["options"] == {"runner": "echo"}
    assert idea["status"] == "completed"
    assert idea["job_id"] == accepted["job_id"]
    assert idea["attempts"] == 1
    assert idea["error"] is None
    assert idea["progress"] == job["progress"]
    assert idea["title"] == "A habit tracker for remote teams"
    # The echo runner answers with the idea itself: read as plain text, it is one section.
    spec = idea["spec"]
    assert spec["title"] == idea["title"]
    assert spec["format"] == "markdown"
    assert spec["raw"] == HABITS
    assert spec["model"] == "echo"
    assert [s["heading"] for s in spec["sections"]] == ["Overview"]
    assert "see their streaks" in spec["sections"][0]["body"]
    created = assert_iso_utc(idea["created_at"])
    started = assert_iso_utc(idea["started_at"])
    finished = assert_iso_utc(idea["finished_at"])
    assert created <= started <= finished
    assert idea["duration_ms"] >= 0


async def test_job_channel_carries_progress_and_the_models_text(
    client: httpx.AsyncClient, account: Account
) -> None:
    accepted = await generate(client, account, HABITS)
    await wait_job(client, account, accepted["job_id"])

    events = await channel_events(client, account, f"job:{accepted['job_id']}")
    names = [e["event"] for e in events]
    assert names[0] == "job.queued"
    assert names[-1] == "job.completed"
    progress = [e["data"]["progress"] for e in events if e["event"] == "job.progress"]
    assert [p["percent"] for p in progress] == [10, 90]
    assert events[-1]["data"]["progress"]["percent"] == 100
    assert progress[0]["message"] == "asking the model"
    deltas = [e["data"] for e in events if e["event"] == "message.delta"]
    assert {(d["job_id"], d["idea_id"]) for d in deltas} == {
        (accepted["job_id"], accepted["idea_id"])
    }
    assert [d["index"] for d in deltas] == list(range(len(deltas)))
    assert "".join(d["delta"] for d in deltas) == HABITS
    # The text streams between the two progress reports.
    at = {name: [i for i, n in enumerate(names) if n == name] for name in set(names)}
    assert at["job.progress"][0] < at["message.delta"][0]
    assert at["message.delta"][-1] < at["job.progress"][-1]


async def test_markdown_answer_is_split_at_its_headings(
    client: httpx.AsyncClient, account: Account
) -> None:
    text = (
        "# Plant watering robot\n"
        "Keeps office plants alive.\n\n"
        "## Goals\n- water on schedule\n- report dry soil\n\n"
        "## Hardware\n```bash\n# not a heading: inside a code block\nflash firmware\n```\n"
    )
    idea = await generated(client, account, text)
    spec = idea["spec"]
    assert idea["title"] == spec["title"] == "Plant watering robot"
    assert spec["format"] == "markdown"
    assert spec["summary"] == "Keeps office plants alive."
    assert [s["heading"] for s in spec["sections"]] == ["Goals", "Hardware"]
    assert spec["sections"][0]["body"] == "- water on schedule\n- report dry soil"
    assert "# not a heading" in spec["sections"][1]["body"]


async def test_json_answer_is_taken_as_asked(client: httpx.AsyncClient, account: Account) -> None:
    answer = {
        "title": "Cat feeder",
        "summary": "Feeds the cat on time.",
        "sections": [
            {"heading": "API", "body": "`POST /feed`"},
            {"heading": "Risks", "body": ["cat learns the API", "jammed kibble"]},
        ],
    }
    # The echo runner answers with the idea: here, the JSON a model would write, fenced.
    idea = await generated(client, account, f"Sure!\n```json\n{json.dumps(answer)}\n```")
    spec = idea["spec"]
    assert idea["title"] == "Cat feeder"
    assert spec["format"] == "json"
    assert spec["summary"] == "Feeds the cat on time."
    assert spec["sections"] == [
        {"heading": "API", "body": "`POST /feed`"},
        {"heading": "Risks", "body": "- cat learns the API\n- jammed kibble"},
    ]
    assert spec["raw"] is None


async def test_transient_failure_is_retried(database_url: str, tmp_path: Path) -> None:
    async with (
        custom_app(database_url, tmp_path, job_backoff_base_seconds=0.01) as app,
        asgi_client(app) as client,
    ):
        account = await register(client, "retry-ideas@example.com")
        accepted = await generate(client, account, HABITS, runner_options={"fail_first": 1})
        job = await wait_job(client, account, accepted["job_id"])
        assert job["status"] == "completed", job

        idea = await get_idea(client, account, accepted["idea_id"])
        assert idea["status"] == "completed"
        assert idea["attempts"] == 2
        assert idea["spec"]["title"] == "A habit tracker for remote teams"
        events = await channel_events(client, account, f"job:{accepted['job_id']}")
        assert [e["event"] for e in events].count("job.retrying") == 1


async def test_history_lists_newest_first_and_finds_by_words(
    client: httpx.AsyncClient, account: Account
) -> None:
    lighthouse = (await generated(client, account, "Lighthouse keeper logbook app"))["id"]
    recipes = (await generated(client, account, "Recipe planner for busy parents"))["id"]
    tides = (await generated(client, account, "Tide tables for the lighthouse crew"))["id"]

    page = await list_page(client, account, "/v1/ideas")
    assert ids(page) == [tides, recipes, lighthouse]
    assert set(page["data"][0]) == IDEA_FIELDS
    assert page["data"][0]["spec"]["title"] == "Tide tables for the lighthouse crew"

    assert ids(await list_page(client, account, "/v1/ideas", q="lighthouse")) == [
        tides,
        lighthouse,
    ]
    assert ids(await list_page(client, account, "/v1/ideas", q="PARENTS recipe")) == [recipes]
    assert ids(await list_page(client, account, "/v1/ideas", q="submarine")) == []
    assert ids(await list_page(client, account, "/v1/ideas", q='"OR (')) == []

    first = await list_page(client, account, "/v1/ideas", limit=2)
    assert ids(first) == [tides, recipes]
    assert first["has_more"] is True
    rest = await list_page(client, account, "/v1/ideas", limit=2, after=first["next_cursor"])
    assert ids(rest) == [lighthouse]
    assert rest["has_more"] is False


async def test_history_filters_by_status(client: httpx.AsyncClient, account: Account) -> None:
    done = (await generated(client, account, "Finished idea"))["id"]
    slow = await generate(client, account, "word " * 200, runner_options={"delay_ms": 50})
    canceled = await client.post(f"/v1/jobs/{slow['job_id']}/cancel", headers=account.headers)
    assert canceled.status_code == 200, canceled.text

    idea = await get_idea(client, account, slow["idea_id"])
    assert idea["status"] == "canceled"
    assert idea["spec"] is None
    assert idea["title"] is None
    assert ids(await list_page(client, account, "/v1/ideas", status="canceled")) == [
        slow["idea_id"]
    ]
    assert ids(await list_page(client, account, "/v1/ideas", status="completed")) == [done]
    assert ids(await list_page(client, account, "/v1/ideas", status="running")) == []


async def test_another_users_ideas_are_not_found(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    other = await make_account()
    theirs = await generated(client, other, "Secret walrus tracking")

    response = await client.get(f"/v1/ideas/{theirs['id']}", headers=account.headers)
    assert_problem(response, 404)
    assert ids(await list_page(client, account, "/v1/ideas")) == []
    assert ids(await list_page(client, account, "/v1/ideas", q="walrus")) == []
    assert_problem(await client.get("/v1/ideas/ide_missing", headers=account.headers), 404)

    # A job naming someone else's idea fails at once, and their idea stays as it was.
    job = await create_job(client, account, "spec.generate", {"idea_id": theirs["id"]})
    failed = await wait_job(client, account, job["id"])
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1
    assert failed["error"]["type"] == "not_found"
    assert (await get_idea(client, other, theirs["id"]))["job_id"] == theirs["job_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"idea": ""}, "idea"),
        ({"idea": " \n\t "}, "idea"),
        ({"idea": "x" * 20_001}, "idea"),
        ({"idea": "a\x00b"}, "idea"),
        ({}, "idea"),
        ({"idea": "ok", "options": {"runner": "gpt-in-a-box"}}, "options.runner"),
        ({"idea": "ok", "options": {"sections": [""]}}, "options.sections.0"),
        ({"idea": "ok", "options": {"sections": ["s"] * 31}}, "options.sections"),
        ({"idea": "ok", "options": {"temperature": 2}}, "options.temperature"),
        ({"idea": "ok", "options": {"runner_options": []}}, "options.runner_options"),
        ({"idea": "ok", "priority": 5}, "priority"),
    ],
)
async def test_invalid_requests_are_422(
    client: httpx.AsyncClient, account: Account, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/generate", json=body, headers=account.headers)
    assert field in error_fields(assert_problem(response, 422))
    assert ids(await list_page(client, account, "/v1/ideas")) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"q": "x" * 501}, "q"),
        ({"q": "a\x00b"}, "q"),
        ({"after": "job_01ARZ3NDEKTSV4RRFFQ69G5FAV"}, "after"),
        ({"limit": 0}, "limit"),
    ],
)
async def test_invalid_list_queries_are_422(
    client: httpx.AsyncClient, account: Account, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/v1/ideas", params=params, headers=account.headers)
    assert field in error_fields(assert_problem(response, 422))


async def test_idempotent_replay_returns_the_same_ids(
    client: httpx.AsyncClient, account: Account
) -> None:
    body = {"idea": "Bike repair marketplace", "options": {"runner": "echo"}}
    headers = {**account.headers, "Idempotency-Key": "idea-1"}
    first = await client.post("/v1/generate", json=body, headers=headers)
    again = await client.post("/v1/generate", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert ids(await list_page(client, account, "/v1/ideas")) == [first.json()["idea_id"]]

    changed = await client.post(
        "/v1/generate", json={**body, "idea": "Something else"}, headers=headers
    )
    assert "Idempotency-Key" in error_fields(assert_problem(changed, 422))


async def test_requires_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/v1/generate", json={"idea": "x"}), 401)
    assert_problem(await client.get("/v1/ideas"), 401)
