"""`/v1/agents` through the HTTP API: CRUD, filters, search, sort, paging, bulk actions with
partial success, config upload (JSON, YAML, every way a file can be wrong), metrics, logs,
isolation, idempotent creation and domain events."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from agenthub.app import create_app
from agenthub.config import Settings
from agenthub.core.ids import new_id
from conftest import AccountFactory, asgi_client
from support import (
    Account,
    assert_problem,
    error_fields,
    list_page,
    names,
    record_events,
    seed_session,
)

URL = "/v1/agents"
RUNNER_FIELDS = ("runner", "model", "system_prompt", "options")


async def create(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Agent")
    body.setdefault("type", "primary")
    response = await client.post(URL, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def upload(
    client: httpx.AsyncClient,
    account: Account,
    agent_id: str,
    content: bytes,
    filename: str = "agent.yaml",
    content_type: str = "application/octet-stream",
) -> httpx.Response:
    files = {"file": (filename, content, content_type)}
    return await client.post(f"{URL}/{agent_id}/config", files=files, headers=account.headers)


async def bulk(client: httpx.AsyncClient, account: Account, **body: Any) -> httpx.Response:
    return await client.post(f"{URL}/bulk", json=body, headers=account.headers)


async def project(client: httpx.AsyncClient, account: Account, name: str = "P") -> str:
    response = await client.post("/v1/projects", json={"name": name}, headers=account.headers)
    assert response.status_code == 201, response.text
    project_id: str = response.json()["id"]
    return project_id


async def test_create_read_update_delete(client: httpx.AsyncClient, account: Account) -> None:
    project_id = await project(client, account)
    created = await create(
        client,
        account,
        name="Researcher",
        type="research",
        project_id=project_id,
        runner="openai",
        model="gpt-4o-mini",
        system_prompt="You find sources.",
        options={"temperature": 0.2},
    )
    assert created["id"].startswith("agt_")
    assert created["status"] == "idle"
    assert created["project_id"] == project_id
    assert created["options"] == {"temperature": 0.2}
    assert created["created_at"].endswith("Z")
    one = f"{URL}/{created['id']}"
    assert (await client.get(one, headers=account.headers)).json() == created

    patched = await client.patch(
        one,
        json={"status": "error", "model": None, "project_id": None, "type": "log_analysis"},
        headers=account.headers,
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert (body["status"], body["model"], body["project_id"], body["type"]) == (
        "error",
        None,
        None,
        "log_analysis",
    )
    assert body["system_prompt"] == "You find sources." and body["runner"] == "openai"

    assert (await client.delete(one, headers=account.headers)).status_code == 204
    assert_problem(await client.get(one, headers=account.headers), 404)
    assert_problem(await client.patch(one, json={"name": "x"}, headers=account.headers), 404)


async def test_defaults_and_custom_types(client: httpx.AsyncClient, account: Account) -> None:
    agent = await create(client, account, name="Mine", type="my-triage_bot2")
    assert agent["type"] == "my-triage_bot2"
    assert {k: agent[k] for k in RUNNER_FIELDS} == {
        "runner": "echo",
        "model": None,
        "system_prompt": None,
        "options": {},
    }
    for builtin in ("primary", "log_analysis", "research", "router"):
        assert (await create(client, account, type=builtin))["type"] == builtin


BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"type": "Primary"}, "type"),
    ({"type": "9lives"}, "type"),
    ({"type": "a" * 65}, "type"),
    ({"type": "has space"}, "type"),
    ({"runner": "gpt"}, "runner"),
    ({"status": "busy"}, "status"),
    ({"name": ""}, "name"),
    ({"options": "fast"}, "options"),
    ({"project_id": new_id("prj")}, "project_id"),
    ({"colour": "red"}, "colour"),
]


async def test_create_rejects_bad_input(client: httpx.AsyncClient, account: Account) -> None:
    for body, field in BAD_CREATES:
        full = {"name": "A", "type": "primary", **body}
        response = await client.post(URL, json=full, headers=account.headers)
        assert field in error_fields(assert_problem(response, 422)), body
    assert (await list_page(client, account, URL))["data"] == []


BAD_PATCHES: list[dict[str, Any]] = [
    {"name": None},
    {"type": None},
    {"runner": None},
    {"options": None},
    {"status": "paused"},
    {"project_id": "prj_unknown"},
]


async def test_patch_rejects_bad_values(client: httpx.AsyncClient, account: Account) -> None:
    agent = await create(client, account)
    url = f"{URL}/{agent['id']}"
    for patch in BAD_PATCHES:
        response = await client.patch(url, json=patch, headers=account.headers)
        assert_problem(response, 422)
    assert (await client.get(url, headers=account.headers)).json() == agent


async def test_filters_search_and_sort(client: httpx.AsyncClient, account: Account) -> None:
    project_id = await project(client, account)
    await create(client, account, name="bravo", type="research", runner="openai")
    await create(client, account, name="alpha", system_prompt="Summarise LOGS", status="running")
    await create(client, account, name="charlie", type="router", project_id=project_id)
    await create(client, account, name="delta logs", type="research", runner="cli")

    assert names(await list_page(client, account, URL)) == [
        "delta logs",
        "charlie",
        "alpha",
        "bravo",
    ]
    assert names(await list_page(client, account, URL, sort="name")) == [
        "alpha",
        "bravo",
        "charlie",
        "delta logs",
    ]
    assert names(await list_page(client, account, URL, type="research", sort="name")) == [
        "bravo",
        "delta logs",
    ]
    assert names(await list_page(client, account, URL, status="running")) == ["alpha"]
    assert names(await list_page(client, account, URL, runner="openai")) == ["bravo"]
    assert names(await list_page(client, account, URL, project_id=project_id)) == ["charlie"]
    assert names(await list_page(client, account, URL, q="logs", sort="-name")) == [
        "delta logs",
        "alpha",
    ]
    assert names(await list_page(client, account, URL, q="LOGS", runner="cli")) == ["delta logs"]
    assert (await list_page(client, account, URL, project_id=new_id("prj")))["data"] == []
    for params in ({"type": "Bad Type"}, {"status": "x"}, {"runner": "x"}, {"sort": "type"}):
        assert_problem(await client.get(URL, params=params, headers=account.headers), 422)


@pytest.mark.parametrize("sort", ["-created_at", "-name", "updated_at"])
async def test_paging_returns_every_agent_once_in_order(
    client: httpx.AsyncClient, account: Account, sort: str
) -> None:
    for n in range(5):
        await create(client, account, name=f"a{n // 2}")
    ids = [a["id"] for a in (await list_page(client, account, URL, sort=sort))["data"]]
    assert len(ids) == 5
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"sort": sort, "limit": 2}
        if cursor:
            params["after"] = cursor
        page = await list_page(client, account, URL, **params)
        seen += [a["id"] for a in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == ids
    assert_problem(
        await client.get(URL, params={"after": new_id("prj")}, headers=account.headers), 422
    )


async def test_bulk_start_stop_with_partial_success(
    app: FastAPI, client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    mine = [await create(client, account, name=f"m{n}") for n in range(3)]
    other = await make_account()
    foreign = await create(client, other, name="theirs")
    unknown = new_id("agt")
    ids = [mine[0]["id"], foreign["id"], mine[1]["id"], unknown]
    events = record_events(app).events

    response = await bulk(client, account, action="start", ids=ids)
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert (outcome["succeeded"], outcome["failed"]) == (2, 2)
    assert [r["id"] for r in outcome["results"]] == ids
    assert [r["ok"] for r in outcome["results"]] == [True, False, True, False]
    assert [r["status"] for r in outcome["results"]] == [200, 404, 200, 404]
    for result in outcome["results"]:
        if result["ok"]:
            assert result["agent"]["status"] == "running"
        else:
            assert result["error"] == "Agent not found."
            assert result["agent"] is None
    assert [e.event for e in events] == ["agent.updated", "agent.updated"]
    assert {e.data["id"] for e in events} == {mine[0]["id"], mine[1]["id"]}

    states = {a["id"]: a["status"] for a in (await list_page(client, account, URL))["data"]}
    assert states == {mine[0]["id"]: "running", mine[1]["id"]: "running", mine[2]["id"]: "idle"}
    theirs = await client.get(f"{URL}/{foreign['id']}", headers=other.headers)
    assert theirs.json()["status"] == "idle"

    stopped = (await bulk(client, account, action="stop", ids=[m["id"] for m in mine])).json()
    assert stopped["succeeded"] == 3
    assert {r["agent"]["status"] for r in stopped["results"]} == {"stopped"}


async def test_bulk_update_and_delete(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    project_id = await project(client, account)
    a, b = await create(client, account, name="a"), await create(client, account, name="b")
    ids = [a["id"], b["id"]]
    updated = await bulk(
        client,
        account,
        action="update",
        ids=ids,
        patch={"model": "llama3", "project_id": project_id, "options": {"k": 1}},
    )
    assert updated.status_code == 200, updated.text
    for result in updated.json()["results"]:
        agent = result["agent"]
        assert (agent["model"], agent["project_id"], agent["options"]) == (
            "llama3",
            project_id,
            {"k": 1},
        )
        assert agent["name"] in ("a", "b")

    events = record_events(app).events
    missing = new_id("agt")
    deleted = await bulk(client, account, action="delete", ids=[a["id"], missing])
    outcome = deleted.json()
    assert (outcome["succeeded"], outcome["failed"]) == (1, 1)
    assert [r["status"] for r in outcome["results"]] == [204, 404]
    assert [(e.event, e.data) for e in events] == [("agent.deleted", {"id": a["id"]})]
    assert_problem(await client.get(f"{URL}/{a['id']}", headers=account.headers), 404)
    assert names(await list_page(client, account, URL)) == ["b"]


BAD_BULKS: list[tuple[dict[str, Any], str]] = [
    ({"action": "update", "ids": ["agt_x"]}, "patch"),
    ({"action": "start", "ids": ["agt_x"], "patch": {"name": "n"}}, "patch"),
    ({"action": "update", "ids": ["agt_x"], "patch": {"runner": "bad"}}, "patch.runner"),
    ({"action": "update", "ids": ["agt_x"], "patch": {"project_id": "prj_x"}}, "project_id"),
    ({"action": "restart", "ids": ["agt_x"]}, "action"),
    ({"action": "start", "ids": []}, "ids"),
    ({"action": "start", "ids": [f"agt_{n}" for n in range(101)]}, "ids"),
    ({"action": "start", "ids": ["agt_x", "agt_x"]}, "ids"),
    ({"action": "start", "ids": ["agt_" + "x" * 80]}, "ids.0"),
]


async def test_bulk_rejects_bad_requests(client: httpx.AsyncClient, account: Account) -> None:
    agent = await create(client, account)
    for body, field in BAD_BULKS:
        body = {**body, "ids": [agent["id"] if i == "agt_x" else i for i in body["ids"]]}
        problem = assert_problem(await bulk(client, account, **body), 422)
        assert field in error_fields(problem), body
    assert (await client.get(f"{URL}/{agent['id']}", headers=account.headers)).json() == agent


YAML_CONFIG = b"""# runner settings for the triage agent
runner: openai
model: gpt-4o-mini
system_prompt: |
  You triage incidents.
  Be brief.
options:
  temperature: 0.1
  stop: ["END"]
  since: 2024-05-01
"""


async def test_config_upload_yaml_and_json(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    agent = await create(client, account, name="Triage", status="running")
    events = record_events(app).events
    response = await upload(client, account, agent["id"], YAML_CONFIG, "triage.yml")
    assert response.status_code == 200, response.text
    body = response.json()
    assert {k: body[k] for k in RUNNER_FIELDS} == {
        "runner": "openai",
        "model": "gpt-4o-mini",
        "system_prompt": "You triage incidents.\nBe brief.\n",
        "options": {"temperature": 0.1, "stop": ["END"], "since": "2024-05-01"},
    }
    assert (body["name"], body["status"]) == ("Triage", "running")
    assert [e.event for e in events] == ["agent.updated"]

    # JSON by content type; keys the file leaves out are reset.
    response = await upload(
        client, account, agent["id"], b'{"runner": "cli"}', "cfg", "application/json"
    )
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in RUNNER_FIELDS} == {
        "runner": "cli",
        "model": None,
        "system_prompt": None,
        "options": {},
    }
    stored = await client.get(f"{URL}/{agent['id']}", headers=account.headers)
    assert stored.json() == response.json()

    by_extension = await upload(client, account, agent["id"], b'{"runner": "echo"}', "a.json")
    assert by_extension.json()["runner"] == "echo"


# (content, file name, content type, text the problem's detail must contain)
BAD_CONFIGS: list[tuple[bytes, str, str, str]] = [
    (b'{"runner": "openai",\n  "model": }', "a.json", "application/json", "line 2, column 12"),
    (b"runner: openai\nmodel: [unclosed\n", "a.yaml", "application/yaml", "line 3, column 1"),
    (b"runner: openai\n  model: x: y\n", "a.yaml", "text/yaml", "line 2, column"),
    (b"- runner\n- model\n", "a.yaml", "application/yaml", "must be an object"),
    (b"", "empty.yaml", "application/yaml", "must be an object"),
    (b"runner: echo\ncolour: red\n", "a.yaml", "application/yaml", "colour"),
    (b"runner: gpt\n", "a.yaml", "application/yaml", "runner"),
    (b"model: x\n", "a.yaml", "application/yaml", "runner"),
    (b"runner: echo\noptions: 3\n", "a.yaml", "application/yaml", "options"),
    (b'{"runner": "echo", "options": {"t": NaN}}', "a.json", "", "finite"),
    (b"runner: echo\noptions: {1: one}\n", "a.yaml", "", "keys must be strings"),
    (b"runner: echo\noptions: !!binary aGVsbG8=\n", "a.yaml", "", "bytes"),
    (b"\xff\xfe\x00r", "a.yaml", "", "UTF-8"),
]


async def test_config_upload_errors_say_what_is_wrong(
    client: httpx.AsyncClient, account: Account
) -> None:
    agent = await create(client, account, runner="cli", model="m")
    for content, filename, content_type, in_detail in BAD_CONFIGS:
        media = content_type or "application/octet-stream"
        response = await upload(client, account, agent["id"], content, filename, media)
        problem = assert_problem(response, 422)
        assert in_detail in problem["detail"], (content, problem)
        assert all(field.startswith("file") for field in error_fields(problem)), problem
    unchanged = await client.get(f"{URL}/{agent['id']}", headers=account.headers)
    assert unchanged.json() == agent


async def test_config_upload_yaml_alias_bomb_is_refused(
    client: httpx.AsyncClient, account: Account
) -> None:
    levels = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    levels += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 8)]
    bomb = ("runner: echo\noptions:\n" + "\n".join(f"  {line}" for line in levels)).encode()
    agent = await create(client, account)
    problem = assert_problem(await upload(client, account, agent["id"], bomb), 422)
    assert "values" in problem["detail"]


TOO_BIG = b"runner: echo\n# " + b"x" * 1_048_576 + b"\n"


async def test_config_upload_limits_and_media_types(
    client: httpx.AsyncClient, account: Account
) -> None:
    agent = await create(client, account)
    assert_problem(await upload(client, account, agent["id"], TOO_BIG), 413)
    png = await upload(client, account, agent["id"], b"\x89PNG\r\n", "a.png", "image/png")
    assert_problem(png, 415)
    no_file = await client.post(f"{URL}/{agent['id']}/config", headers=account.headers)
    assert "file" in error_fields(assert_problem(no_file, 422))
    missing = await upload(client, account, new_id("agt"), b"runner: echo\n")
    assert_problem(missing, 404)


async def test_config_over_one_mib_is_413_under_a_larger_body_limit(
    settings: Settings, client: httpx.AsyncClient, account: Account
) -> None:
    roomy = create_app(settings.model_copy(update={"max_body_bytes": 4 * 1_048_576}))
    async with LifespanManager(roomy), asgi_client(roomy) as roomy_client:
        agent = await create(roomy_client, account)
        response = await upload(roomy_client, account, agent["id"], TOO_BIG)
        assert "1048576 bytes" in assert_problem(response, 413)["detail"]
        ok = await upload(roomy_client, account, agent["id"], TOO_BIG[:1_000_000])
        assert ok.status_code == 200, ok.text


async def test_metrics_and_logs(app: FastAPI, client: httpx.AsyncClient, account: Account) -> None:
    agent = await create(client, account)
    metrics = await client.get(f"{URL}/{agent['id']}/metrics", headers=account.headers)
    assert metrics.status_code == 200, metrics.text
    assert metrics.json() == {
        "runs": 0,
        "failures": 0,
        "tokens": {"prompt": 0, "completion": 0, "total": 0},
        "latency_ms": {"p50": None, "p95": None, "p99": None},
    }
    await seed_session(app, account.id, agent_id=agent["id"], prompt_tokens=12)
    await seed_session(app, account.id, agent_id=agent["id"], completion_tokens=30)
    await seed_session(app, account.id, prompt_tokens=99)  # another agent's work
    tokens = (await client.get(f"{URL}/{agent['id']}/metrics", headers=account.headers)).json()
    assert tokens["tokens"] == {"prompt": 12, "completion": 30, "total": 42}

    logs = await client.get(f"{URL}/{agent['id']}/logs", headers=account.headers)
    assert logs.status_code == 200
    assert logs.json() == {"data": [], "has_more": False, "next_cursor": None}
    bad = await client.get(f"{URL}/{agent['id']}/logs?limit=0", headers=account.headers)
    assert_problem(bad, 422)


async def test_another_users_agents_are_invisible(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    mine_project = await project(client, account)
    agent = await create(client, account, name="Secret", project_id=mine_project)
    other = await make_account()
    url = f"{URL}/{agent['id']}"
    for response in (
        await client.get(url, headers=other.headers),
        await client.patch(url, json={"name": "Stolen"}, headers=other.headers),
        await client.delete(url, headers=other.headers),
        await upload(client, other, agent["id"], b"runner: cli\n"),
        await client.get(f"{url}/metrics", headers=other.headers),
        await client.get(f"{url}/logs", headers=other.headers),
    ):
        assert_problem(response, 404)
    for action in ("start", "stop", "delete"):
        outcome = (await bulk(client, other, action=action, ids=[agent["id"]])).json()
        assert outcome["results"] == [
            {
                "id": agent["id"],
                "ok": False,
                "status": 404,
                "error": "Agent not found.",
                "agent": None,
            }
        ]
    assert (await list_page(client, other, URL))["data"] == []
    assert (await list_page(client, other, URL, q="Secret", project_id=mine_project))["data"] == []
    # Nor can the other user attach an agent to the first user's project.
    stolen = await client.post(
        URL,
        json={"name": "x", "type": "primary", "project_id": mine_project},
        headers=other.headers,
    )
    assert "project_id" in error_fields(assert_problem(stolen, 422))
    assert (await client.get(url, headers=account.headers)).json() == agent


async def test_routes_need_authentication(client: httpx.AsyncClient) -> None:
    agent_id = new_id("agt")
    assert_problem(await client.get(URL), 401)
    assert_problem(await client.post(f"{URL}/bulk", json={"action": "start", "ids": ["a"]}), 401)
    assert_problem(await client.get(f"{URL}/{agent_id}/metrics"), 401)


async def test_idempotent_create_and_events(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    events = record_events(app).events
    headers = {**account.headers, "Idempotency-Key": "agent-1"}
    body = {"name": "Once", "type": "router"}
    first = await client.post(URL, json=body, headers=headers)
    again = await client.post(URL, json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert names(await list_page(client, account, URL)) == ["Once"]

    url = f"{URL}/{first.json()['id']}"
    await client.patch(url, json={"status": "stopped"}, headers=account.headers)
    await client.delete(url, headers=account.headers)
    assert [e.event for e in events] == ["agent.created", "agent.updated", "agent.deleted"]
    assert {e.channel for e in events} == {f"user:{account.id}"}
    assert events[0].data == first.json()
    assert events[1].data["status"] == "stopped"
