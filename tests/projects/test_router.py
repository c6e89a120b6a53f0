"""`/v1/projects` through the HTTP API: CRUD, filters, search, sort, paging, stats, isolation,
idempotent creation and the domain events each change publishes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from agenthub.core.ids import new_id
from agenthub.db.models.sessions import ChatSession
from conftest import AccountFactory
from support import (
    Account,
    assert_problem,
    error_fields,
    list_page,
    names,
    record_events,
    seed_session,
)

URL = "/v1/projects"


async def create(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Project")
    response = await client.post(URL, json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    project: dict[str, Any] = response.json()
    return project


async def test_create_read_update_delete(client: httpx.AsyncClient, account: Account) -> None:
    created = await create(
        client,
        account,
        name="Apollo",
        description="Moon landing",
        status="paused",
        metadata={"color": "blue", "tags": ["a"]},
    )
    assert created["id"].startswith("prj_")
    assert created["created_at"].endswith("Z") and created["updated_at"].endswith("Z")
    assert {k: created[k] for k in ("name", "description", "status", "metadata")} == {
        "name": "Apollo",
        "description": "Moon landing",
        "status": "paused",
        "metadata": {"color": "blue", "tags": ["a"]},
    }
    one = f"{URL}/{created['id']}"
    assert (await client.get(one, headers=account.headers)).json() == created

    renamed = await client.patch(one, json={"name": "Artemis"}, headers=account.headers)
    assert renamed.status_code == 200, renamed.text
    body = renamed.json()
    assert body["name"] == "Artemis"
    assert body["description"] == "Moon landing" and body["status"] == "paused"
    assert body["updated_at"] >= created["updated_at"]

    replaced = await client.patch(
        one, json={"metadata": {"size": 3}, "status": "active"}, headers=account.headers
    )
    assert replaced.json()["metadata"] == {"size": 3}
    assert replaced.json()["status"] == "active"
    assert (await client.get(one, headers=account.headers)).json() == replaced.json()

    deleted = await client.delete(one, headers=account.headers)
    assert deleted.status_code == 204 and deleted.content == b""
    assert_problem(await client.get(one, headers=account.headers), 404)
    assert_problem(await client.delete(one, headers=account.headers), 404)


async def test_defaults(client: httpx.AsyncClient, account: Account) -> None:
    created = await create(client, account, name="Bare")
    assert created["description"] == ""
    assert created["status"] == "active"
    assert created["metadata"] == {}


BAD_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"name": "ok", "status": "done"}, "status"),
    ({"name": "ok", "metadata": ["not", "an", "object"]}, "metadata"),
    ({"name": "ok", "owner": "someone"}, "owner"),
    ({"description": "no name"}, "name"),
]


async def test_create_rejects_bad_input(client: httpx.AsyncClient, account: Account) -> None:
    for body, field in BAD_CREATES:
        problem = assert_problem(await client.post(URL, json=body, headers=account.headers), 422)
        assert field in error_fields(problem), body
    assert (await list_page(client, account, URL))["data"] == []


async def test_non_finite_numbers_are_422_not_500(
    client: httpx.AsyncClient, account: Account
) -> None:
    # Python's JSON parser accepts NaN; no JSON column can store it.
    response = await client.post(
        URL,
        content=b'{"name": "n", "metadata": {"ratio": NaN}}',
        headers={**account.headers, "content-type": "application/json"},
    )
    problem = assert_problem(response, 422)
    assert error_fields(problem) == {"metadata"}


async def test_patch_rejects_nulls_and_bad_values(
    client: httpx.AsyncClient, account: Account
) -> None:
    project = await create(client, account, name="Keep")
    url = f"{URL}/{project['id']}"
    for patch in ({"name": None}, {"status": None}, {"metadata": None}, {"status": "gone"}):
        problem = assert_problem(await client.patch(url, json=patch, headers=account.headers), 422)
        assert error_fields(problem) == set(patch), patch
    assert_problem(await client.patch(url, json={"id": "prj_x"}, headers=account.headers), 422)
    assert (await client.get(url, headers=account.headers)).json() == project


async def test_filter_by_status_and_search(client: httpx.AsyncClient, account: Account) -> None:
    await create(client, account, name="Billing revamp", description="Stripe migration")
    await create(client, account, name="Docs", description="REVAMP the guides", status="paused")
    await create(client, account, name="Ops 100%", status="completed")
    await create(client, account, name="Ops 1000", status="archived")

    assert names(await list_page(client, account, URL, status="paused")) == ["Docs"]
    assert names(await list_page(client, account, URL, status="archived")) == ["Ops 1000"]
    found = await list_page(client, account, URL, q="revamp")
    assert sorted(names(found)) == ["Billing revamp", "Docs"]
    assert names(await list_page(client, account, URL, q="STRIPE")) == ["Billing revamp"]
    assert names(await list_page(client, account, URL, q="revamp", status="active")) == [
        "Billing revamp"
    ]
    # `%` and `_` are matched literally, not as wildcards.
    assert names(await list_page(client, account, URL, q="100%")) == ["Ops 100%"]
    assert names(await list_page(client, account, URL, q="_")) == []
    assert (await list_page(client, account, URL, q="nothing like it"))["data"] == []
    assert_problem(await client.get(URL, params={"status": "x"}, headers=account.headers), 422)


async def test_sort_orders(client: httpx.AsyncClient, account: Account) -> None:
    created = [await create(client, account, name=n) for n in ("delta", "alpha", "charlie")]
    # Touch "delta" so it becomes the most recently updated.
    await client.patch(
        f"{URL}/{created[0]['id']}", json={"description": "x"}, headers=account.headers
    )
    expected = {
        None: ["charlie", "alpha", "delta"],
        "-created_at": ["charlie", "alpha", "delta"],
        "created_at": ["delta", "alpha", "charlie"],
        "name": ["alpha", "charlie", "delta"],
        "-name": ["delta", "charlie", "alpha"],
        "-updated_at": ["delta", "charlie", "alpha"],
        "updated_at": ["alpha", "charlie", "delta"],
    }
    for sort, order in expected.items():
        params = {"sort": sort} if sort else {}
        assert names(await list_page(client, account, URL, **params)) == order, sort
    for bad in ("size", "+name", "name,-id"):
        response = await client.get(URL, params={"sort": bad}, headers=account.headers)
        assert "sort" in error_fields(assert_problem(response, 422))


@pytest.mark.parametrize("sort", ["-created_at", "name", "-updated_at"])
async def test_paging_returns_every_project_once_in_order(
    client: httpx.AsyncClient, account: Account, sort: str
) -> None:
    for n in range(7):
        # Two projects share each name, so the id must break ties.
        await create(client, account, name=f"p{n // 2}")
    everything = await list_page(client, account, URL, sort=sort, limit=200)
    assert everything["has_more"] is False and everything["next_cursor"] is None
    ids = [p["id"] for p in everything["data"]]
    assert len(ids) == 7

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        params: dict[str, Any] = {"sort": sort, "limit": 3}
        if cursor:
            params["after"] = cursor
        page = await list_page(client, account, URL, **params)
        seen += [p["id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            assert cursor is None
            break
    assert seen == ids

    back = await list_page(client, account, URL, sort=sort, limit=3, before=ids[-1])
    assert [p["id"] for p in back["data"]] == ids[3:6]
    assert back["has_more"] is True and back["next_cursor"] == ids[3]


BAD_LIST_PARAMS: list[dict[str, Any]] = [
    {"limit": 0},
    {"limit": 201},
    {"after": "not-a-cursor"},
    {"after": new_id("agt")},
    {"after": new_id("prj"), "sort": "name"},  # a well-formed id outside the list
    {"after": new_id("prj"), "before": new_id("prj")},
    {"q": "x" * 201},
]


async def test_bad_list_parameters_are_422(client: httpx.AsyncClient, account: Account) -> None:
    for params in BAD_LIST_PARAMS:
        assert_problem(await client.get(URL, params=params, headers=account.headers), 422)


async def test_another_users_projects_are_invisible(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    project = await create(client, account, name="Private")
    other = await make_account()
    url = f"{URL}/{project['id']}"

    for response in (
        await client.get(url, headers=other.headers),
        await client.patch(url, json={"name": "Mine now"}, headers=other.headers),
        await client.delete(url, headers=other.headers),
    ):
        assert project["id"] in assert_problem(response, 404)["detail"]
    assert (await list_page(client, other, URL))["data"] == []
    assert (await list_page(client, other, URL, q="Private"))["data"] == []
    stats = (await client.get(f"{URL}/stats", headers=other.headers)).json()
    assert stats["total"] == 0 and stats["projects"] == []
    # An id that never existed answers exactly the same way.
    missing = await client.get(f"{URL}/{new_id('prj')}", headers=other.headers)
    assert_problem(missing, 404)
    assert (await client.get(url, headers=account.headers)).json() == project


async def test_routes_need_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get(URL), 401)
    assert_problem(await client.post(URL, json={"name": "x"}), 401)
    assert_problem(await client.get(f"{URL}/stats"), 401)


async def test_idempotent_create(client: httpx.AsyncClient, account: Account) -> None:
    headers = {**account.headers, "Idempotency-Key": "create-apollo"}
    first = await client.post(URL, json={"name": "Apollo"}, headers=headers)
    again = await client.post(URL, json={"name": "Apollo"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert names(await list_page(client, account, URL)) == ["Apollo"]

    other_body = await client.post(URL, json={"name": "Gemini"}, headers=headers)
    assert_problem(other_body, 422)
    assert names(await list_page(client, account, URL)) == ["Apollo"]


async def test_changes_publish_events_after_commit(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    events = record_events(app).events
    project = await create(client, account, name="Evented")
    url = f"{URL}/{project['id']}"
    await client.patch(url, json={"status": "completed"}, headers=account.headers)
    await client.patch(url, json={"status": "completed"}, headers=account.headers)  # no change
    await client.patch(url, json={"name": ""}, headers=account.headers)  # rejected
    await client.delete(url, headers=account.headers)

    assert [e.event for e in events] == ["project.created", "project.updated", "project.deleted"]
    assert {e.channel for e in events} == {f"user:{account.id}"}
    assert events[0].data == project
    assert events[1].data["status"] == "completed"
    assert events[2].data == {"id": project["id"]}


async def test_stats_count_statuses_sessions_and_tokens(
    app: FastAPI, client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    busy = await create(client, account, name="Busy")
    quiet = await create(client, account, name="Quiet", status="paused")
    await create(client, account, name="Done", status="completed")
    agent = await client.post(
        "/v1/agents",
        json={"name": "Helper", "type": "primary", "project_id": busy["id"]},
        headers=account.headers,
    )
    assert agent.status_code == 201, agent.text
    await seed_session(
        app, account.id, project_id=busy["id"], prompt_tokens=10, completion_tokens=5
    )
    await seed_session(app, account.id, project_id=busy["id"], prompt_tokens=1, completion_tokens=2)
    await seed_session(
        app, account.id, project_id=busy["id"], prompt_tokens=100, deleted_at=datetime.now(UTC)
    )
    await seed_session(app, account.id, prompt_tokens=50)  # no project
    other = await make_account()
    await seed_session(app, other.id, prompt_tokens=7)

    response = await client.get(f"{URL}/stats", headers=account.headers)
    assert response.status_code == 200, response.text
    stats = response.json()
    assert stats["total"] == 3
    assert stats["by_status"] == {"active": 1, "paused": 1, "completed": 1, "archived": 0}
    per_project = {p["id"]: p for p in stats["projects"]}
    assert [p["name"] for p in stats["projects"]] == ["Done", "Quiet", "Busy"]
    assert per_project[busy["id"]] == {
        "id": busy["id"],
        "name": "Busy",
        "status": "active",
        "agents": 1,
        "sessions": 2,
        "prompt_tokens": 11,
        "completion_tokens": 7,
        "total_tokens": 18,
    }
    assert per_project[quiet["id"]]["sessions"] == 0
    assert per_project[quiet["id"]]["total_tokens"] == 0


async def test_delete_keeps_agents_and_sessions_detached(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    project = await create(client, account, name="Doomed")
    agent = await client.post(
        "/v1/agents",
        json={"name": "Survivor", "type": "research", "project_id": project["id"]},
        headers=account.headers,
    )
    session_id = await seed_session(app, account.id, project_id=project["id"])
    deleted = await client.delete(f"{URL}/{project['id']}", headers=account.headers)
    assert deleted.status_code == 204

    survivor = await client.get(f"/v1/agents/{agent.json()['id']}", headers=account.headers)
    assert survivor.status_code == 200
    assert survivor.json()["project_id"] is None
    async with app.state.database.transaction() as db:
        session = await db.scalar(select(ChatSession).where(ChatSession.id == session_id))
    assert session is not None and session.project_id is None
