"""`/v1/sessions` through the HTTP API: create (by agent or type), the per-agent-type limit,
list, get with messages, patch, soft delete and restore, stats, export, isolation, events."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime
from typing import Any

import httpx
from fastapi import FastAPI

from conftest import AccountFactory
from session_support import (
    add_agent,
    add_project,
    expect,
    get_session,
    new_session,
    post_message,
)
from support import Account, assert_problem, error_fields, ids, list_page, record_events

SESSION_FIELDS = {
    "id",
    "agent_id",
    "agent_type",
    "project_id",
    "title",
    "metadata",
    "status",
    "message_count",
    "prompt_tokens",
    "completion_tokens",
    "last_activity_at",
    "archived_at",
    "deleted_at",
    "created_at",
    "updated_at",
}
LIMIT = 5  # AGENTHUB_MAX_SESSIONS_PER_AGENT_TYPE default


async def create(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = expect(
        await client.post("/v1/sessions", json=body, headers=account.headers), 201
    )
    return created


async def listed(client: httpx.AsyncClient, account: Account, **params: Any) -> list[str]:
    page = await list_page(client, account, "/v1/sessions", limit=200, **params)
    assert page["has_more"] is False
    return ids(page)


# --- create ---------------------------------------------------------------------------------


async def test_create_by_agent_type(client: httpx.AsyncClient, account: Account) -> None:
    created = await create(
        client, account, agent_type="log_analysis", title="  Nginx 502s  ", metadata={"pin": 1}
    )
    assert created["archived"] == []
    session = created["session"]
    assert set(session) == SESSION_FIELDS
    assert session["id"].startswith("ses_")
    assert session["agent_type"] == "log_analysis"
    assert session["agent_id"] is None
    assert session["title"] == "Nginx 502s"
    assert session["metadata"] == {"pin": 1}
    assert session["status"] == "active"
    assert (session["message_count"], session["prompt_tokens"], session["completion_tokens"]) == (
        0,
        0,
        0,
    )
    for field in ("created_at", "updated_at", "last_activity_at"):
        assert session[field].endswith("Z")
    assert session["archived_at"] is None and session["deleted_at"] is None
    default = await new_session(client, account)
    assert default["title"] == "New chat"


async def test_create_by_agent_id_takes_its_type_and_project(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    project_id = await add_project(app, account)
    agent_id = await add_agent(app, account, "research", project_id=project_id)
    session = (await create(client, account, agent_id=agent_id))["session"]
    assert (session["agent_id"], session["agent_type"]) == (agent_id, "research")
    assert session["project_id"] == project_id
    # A matching type is accepted too.
    same = await create(client, account, agent_id=agent_id, agent_type="research")
    assert same["session"]["agent_type"] == "research"


async def test_create_with_a_project(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    project_id = await add_project(app, account)
    session = await new_session(client, account, project_id=project_id)
    assert session["project_id"] == project_id


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({}, "agent_id"),
    ({"agent_type": "Bad Type"}, "agent_type"),
    ({"agent_type": "x" * 65}, "agent_type"),
    ({"agent_type": "primary", "title": "   "}, "title"),
    ({"agent_type": "primary", "title": "t" * 201}, "title"),
    ({"agent_type": "primary", "metadata": "not an object"}, "metadata"),
    ({"agent_type": "primary", "metadata": {"big": "x" * 70_000}}, "metadata"),
    ({"agent_type": "primary", "colour": "red"}, "colour"),
    ({"agent_id": "agt_01JD0000000000000000000000"}, "agent_id"),
    ({"agent_type": "primary", "project_id": "prj_01JD0000000000000000000000"}, "project_id"),
]


async def test_create_rejects_bad_bodies(client: httpx.AsyncClient, account: Account) -> None:
    for body, field in BAD_BODIES:
        response = await client.post("/v1/sessions", json=body, headers=account.headers)
        assert field in error_fields(assert_problem(response, 422)), body
    assert await listed(client, account) == []


async def test_create_rejects_a_type_other_than_the_agents(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    agent_id = await add_agent(app, account, "router")
    response = await client.post(
        "/v1/sessions",
        json={"agent_id": agent_id, "agent_type": "primary"},
        headers=account.headers,
    )
    assert error_fields(assert_problem(response, 422)) == {"agent_type"}


async def test_another_users_agent_or_project_is_unknown(
    app: FastAPI, client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    other = await make_account()
    agent_id = await add_agent(app, other, "primary")
    project_id = await add_project(app, other)
    response = await client.post(
        "/v1/sessions", json={"agent_id": agent_id}, headers=account.headers
    )
    assert error_fields(assert_problem(response, 422)) == {"agent_id"}
    response = await client.post(
        "/v1/sessions",
        json={"agent_type": "primary", "project_id": project_id},
        headers=account.headers,
    )
    assert error_fields(assert_problem(response, 422)) == {"project_id"}


async def test_idempotent_create_replays_the_first_response(
    client: httpx.AsyncClient, account: Account
) -> None:
    headers = {**account.headers, "Idempotency-Key": "new-chat-1"}
    body = {"agent_type": "primary", "title": "Once"}
    first = await client.post("/v1/sessions", json=body, headers=headers)
    again = await client.post("/v1/sessions", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert await listed(client, account) == [first.json()["session"]["id"]]
    changed = await client.post("/v1/sessions", json={**body, "title": "Twice"}, headers=headers)
    assert error_fields(assert_problem(changed, 422)) == {"Idempotency-Key"}


# --- the per-agent-type limit ---------------------------------------------------------------


async def test_one_more_session_archives_the_least_recently_active(
    client: httpx.AsyncClient, account: Account
) -> None:
    first = [await new_session(client, account, title=f"chat {n}") for n in range(LIMIT)]
    research = await new_session(client, account, agent_type="research")
    # Chat 0 is the oldest but talked to last: chat 1 is now the least recently active.
    await post_message(client, account, first[0]["id"])

    created = await create(client, account, agent_type="primary", title="chat 5")
    assert [s["id"] for s in created["archived"]] == [first[1]["id"]]
    archived = created["archived"][0]
    assert archived["status"] == "archived"
    assert archived["archived_at"] is not None

    active = await listed(client, account, agent_type="primary")
    assert len(active) == LIMIT
    assert first[1]["id"] not in active
    assert created["session"]["id"] == active[0]
    # Other agent types are not touched.
    assert research["id"] in await listed(client, account)

    # Archived: still readable, with its messages, listed on request, restorable.
    assert (await get_session(client, account, first[1]["id"]))["status"] == "archived"
    assert await listed(client, account, status="archived") == [first[1]["id"]]
    everything = await listed(client, account, include_archived=True, agent_type="primary")
    assert len(everything) == LIMIT + 1

    restored = expect(
        await client.post(f"/v1/sessions/{first[1]['id']}/restore", headers=account.headers), 200
    )
    assert restored["session"]["status"] == "active"
    assert restored["session"]["archived_at"] is None
    # Restoring makes it the most recent; the least recently active other one makes room.
    assert [s["id"] for s in restored["archived"]] == [first[2]["id"]]
    active = await listed(client, account, agent_type="primary")
    assert active[0] == first[1]["id"]
    assert len(active) == LIMIT


async def test_a_message_to_an_archived_session_makes_it_active(
    client: httpx.AsyncClient, account: Account
) -> None:
    sessions = [await new_session(client, account) for _ in range(LIMIT + 1)]
    oldest = sessions[0]["id"]
    assert (await get_session(client, account, oldest))["status"] == "archived"

    await post_message(client, account, oldest, "picking this up again")
    reopened = await get_session(client, account, oldest)
    assert reopened["status"] == "active"
    assert reopened["message_count"] == 1
    active = await listed(client, account)
    assert active[0] == oldest
    assert len(active) == LIMIT
    assert sessions[1]["id"] not in active  # made room


async def test_concurrent_creates_stay_within_the_limit(
    client: httpx.AsyncClient, account: Account
) -> None:
    results = await asyncio.gather(
        *(create(client, account, agent_type="primary") for _ in range(LIMIT + 3))
    )
    archived = [s["id"] for result in results for s in result["archived"]]
    assert len(archived) == len(set(archived)) == 3
    active = await listed(client, account)
    assert len(active) == LIMIT
    assert set(active).isdisjoint(archived)
    assert len(await listed(client, account, status="archived")) == 3


async def test_deleted_sessions_do_not_count_against_the_limit(
    client: httpx.AsyncClient, account: Account
) -> None:
    sessions = [await new_session(client, account) for _ in range(LIMIT)]
    expect(await client.delete(f"/v1/sessions/{sessions[0]['id']}", headers=account.headers), 204)
    assert (await create(client, account, agent_type="primary"))["archived"] == []


# --- list -----------------------------------------------------------------------------------


async def test_list_is_newest_activity_first_and_pages_by_cursor(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    made = [
        await new_session(client, account, agent_type=kind, title=f"{kind} {n}")
        for n in range(4)
        for kind in ("primary", "research", "router")
    ]
    # Activity reorders: the first session becomes the most recent.
    await post_message(client, account, made[0]["id"])
    other = await make_account()
    await new_session(client, other)

    everything = await listed(client, account)
    expected = [made[0]["id"]] + [s["id"] for s in reversed(made[1:])]
    assert everything == expected

    for order, want in (("desc", everything), ("asc", everything[::-1])):
        seen: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 5, "order": order}
            if cursor:
                params["after"] = cursor
            page = await list_page(client, account, "/v1/sessions", **params)
            seen += ids(page)
            cursor = page["next_cursor"]
            if not page["has_more"]:
                assert cursor is None
                break
        assert seen == want

    back = await list_page(client, account, "/v1/sessions", limit=5, before=everything[-1])
    assert ids(back) == everything[-6:-1]


async def test_list_filters(app: FastAPI, client: httpx.AsyncClient, account: Account) -> None:
    project_id = await add_project(app, account)
    deploy = await new_session(client, account, title="Deploy 100% safely", project_id=project_id)
    logs = await new_session(client, account, agent_type="log_analysis", title="nginx LOGS")
    plain = await new_session(client, account, title="Groceries")

    assert await listed(client, account, agent_type="log_analysis") == [logs["id"]]
    assert await listed(client, account, project_id=project_id) == [deploy["id"]]
    assert await listed(client, account, q="logs") == [logs["id"]]
    assert await listed(client, account, q="100%") == [deploy["id"]]
    assert await listed(client, account, q="0%") == [deploy["id"]]
    assert await listed(client, account, q="_") == []
    assert await listed(client, account, q="nothing like it") == []
    assert await listed(client, account, status="active") == [plain["id"], logs["id"], deploy["id"]]
    assert await listed(client, account, status="archived") == []


BAD_LIST_PARAMS: list[tuple[dict[str, Any], str]] = [
    ({"limit": 0}, "limit"),
    ({"limit": 201}, "limit"),
    ({"status": "gone"}, "status"),
    ({"order": "sideways"}, "order"),
    ({"after": "ses_nope"}, "after"),
    ({"after": "msg_01JD0000000000000000000000"}, "after"),
    ({"after": "ses_01JD0000000000000000000000"}, "cursor"),  # not in this list
    ({"agent_type": "x" * 65}, "agent_type"),
]


async def test_list_rejects_bad_parameters(client: httpx.AsyncClient, account: Account) -> None:
    await new_session(client, account)
    for params, field in BAD_LIST_PARAMS:
        response = await client.get("/v1/sessions", params=params, headers=account.headers)
        assert error_fields(assert_problem(response, 422)) == {field}, params


# --- get, patch -----------------------------------------------------------------------------


async def test_get_embeds_the_last_messages_oldest_first(
    client: httpx.AsyncClient, account: Account
) -> None:
    session = await new_session(client, account)
    posted = [await post_message(client, account, session["id"], f"m{n}") for n in range(5)]

    plain = await get_session(client, account, session["id"])
    assert set(plain) == SESSION_FIELDS | {"messages"}
    assert plain["messages"] == []
    assert plain["message_count"] == 5

    last3 = await get_session(client, account, session["id"], messages=3)
    assert last3["messages"] == posted[2:]
    everything = await get_session(client, account, session["id"], messages=200)
    assert [m["content"] for m in everything["messages"]] == ["m0", "m1", "m2", "m3", "m4"]

    for bad in (-1, 201, "many"):
        response = await client.get(
            f"/v1/sessions/{session['id']}", params={"messages": bad}, headers=account.headers
        )
        assert error_fields(assert_problem(response, 422)) == {"messages"}


async def test_patch_renames_and_replaces_metadata(
    client: httpx.AsyncClient, account: Account
) -> None:
    session = await new_session(client, account, metadata={"a": 1})
    path = f"/v1/sessions/{session['id']}"
    renamed = expect(
        await client.patch(path, json={"title": "Renamed"}, headers=account.headers), 200
    )
    assert renamed["title"] == "Renamed"
    assert renamed["metadata"] == {"a": 1}
    assert renamed["last_activity_at"] == session["last_activity_at"]  # not an activity
    assert datetime.fromisoformat(renamed["updated_at"]) >= datetime.fromisoformat(
        session["updated_at"]
    )
    replaced = expect(
        await client.patch(path, json={"metadata": {"b": [1, 2]}}, headers=account.headers), 200
    )
    assert (replaced["title"], replaced["metadata"]) == ("Renamed", {"b": [1, 2]})
    assert (await get_session(client, account, session["id"]))["metadata"] == {"b": [1, 2]}

    for bad in ({"title": ""}, {"title": None}, {"metadata": None}, {"metadata": [1]}):
        response = await client.patch(path, json=bad, headers=account.headers)
        assert error_fields(assert_problem(response, 422)) == set(bad), bad
    response = await client.patch(path, json={"agent_type": "x"}, headers=account.headers)
    assert error_fields(assert_problem(response, 422)) == {"agent_type"}


# --- delete, restore ------------------------------------------------------------------------


async def test_soft_delete_hides_and_restore_brings_back(
    client: httpx.AsyncClient, account: Account
) -> None:
    keep = await new_session(client, account)
    gone = await new_session(client, account, title="Oops")
    await post_message(client, account, gone["id"], "still here")
    path = f"/v1/sessions/{gone['id']}"

    expect(await client.delete(path, headers=account.headers), 204)
    assert await listed(client, account) == [keep["id"]]
    assert await listed(client, account, include_archived=True) == [keep["id"]]
    assert await listed(client, account, status="deleted") == [gone["id"]]
    deleted = await get_session(client, account, gone["id"], messages=10)
    assert deleted["status"] == "deleted"
    assert deleted["deleted_at"] is not None
    assert [m["content"] for m in deleted["messages"]] == ["still here"]

    # Read-only in the trash; deleting again changes nothing.
    expect(await client.patch(path, json={"title": "x"}, headers=account.headers), 409)
    expect(
        await client.post(
            f"{path}/messages", json={"role": "user", "content": "hi"}, headers=account.headers
        ),
        409,
    )
    expect(
        await client.post(f"{path}/tools", json={"tool_name": "t"}, headers=account.headers), 409
    )
    expect(await client.delete(path, headers=account.headers), 204)

    restored = expect(await client.post(f"{path}/restore", headers=account.headers), 200)
    assert restored["archived"] == []
    assert restored["session"]["status"] == "active"
    assert restored["session"]["deleted_at"] is None
    assert restored["session"]["message_count"] == 1
    assert await listed(client, account) == [gone["id"], keep["id"]]
    # Restoring an active session is a no-op.
    again = expect(await client.post(f"{path}/restore", headers=account.headers), 200)
    assert again["session"] == restored["session"]


# --- stats ----------------------------------------------------------------------------------


async def test_stats_per_agent_type_and_totals(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    empty = expect(await client.get("/v1/sessions/stats", headers=account.headers), 200)
    assert empty["by_agent_type"] == []
    assert empty["totals"]["sessions"] == 0

    primary = [await new_session(client, account) for _ in range(LIMIT + 1)]  # one archived
    research = await new_session(client, account, agent_type="research")
    doomed = await new_session(client, account, agent_type="research")
    await post_message(client, account, primary[-1]["id"], prompt_tokens=10, completion_tokens=0)
    await post_message(
        client, account, primary[-1]["id"], role="assistant", prompt_tokens=0, completion_tokens=30
    )
    await post_message(client, account, research["id"], prompt_tokens=5, completion_tokens=7)
    await post_message(client, account, doomed["id"], prompt_tokens=1000)
    expect(await client.delete(f"/v1/sessions/{doomed['id']}", headers=account.headers), 204)
    other = await make_account()
    await post_message(client, other, (await new_session(client, other))["id"], prompt_tokens=99)

    stats = expect(await client.get("/v1/sessions/stats", headers=account.headers), 200)
    assert stats["by_agent_type"] == [
        {
            "agent_type": "primary",
            "sessions": LIMIT + 1,
            "active": LIMIT,
            "archived": 1,
            "messages": 2,
            "prompt_tokens": 10,
            "completion_tokens": 30,
            "total_tokens": 40,
        },
        {
            "agent_type": "research",
            "sessions": 1,
            "active": 1,
            "archived": 0,
            "messages": 1,
            "prompt_tokens": 5,
            "completion_tokens": 7,
            "total_tokens": 12,
        },
    ]
    assert stats["totals"] == {
        "sessions": LIMIT + 2,
        "active": LIMIT + 1,
        "archived": 1,
        "messages": 3,
        "prompt_tokens": 15,
        "completion_tokens": 37,
        "total_tokens": 52,
    }


# --- export ---------------------------------------------------------------------------------


async def _conversation(client: httpx.AsyncClient, account: Account) -> dict[str, Any]:
    session = await new_session(client, account, title='Q3 "plan" / ../etc')
    await post_message(client, account, session["id"], "What is **2+2**?")
    answer = await post_message(
        client, account, session["id"], "It is 4.", role="assistant", completion_tokens=3
    )
    tool = expect(
        await client.post(
            f"/v1/sessions/{session['id']}/tools",
            json={"tool_name": "calculator", "tool_type": "builtin", "message_id": answer["id"]},
            headers=account.headers,
        ),
        201,
    )
    expect(
        await client.patch(
            f"/v1/sessions/{session['id']}/tools/{tool['id']}",
            json={"status": "succeeded", "output": {"result": 4}},
            headers=account.headers,
        ),
        200,
    )
    return session


def _attachment_name(response: httpx.Response) -> str:
    disposition = response.headers["content-disposition"]
    match = re.fullmatch(r'attachment; filename="([A-Za-z0-9._-]+)"', disposition)
    assert match, disposition
    return match.group(1)


async def test_export_json_holds_everything(client: httpx.AsyncClient, account: Account) -> None:
    session = await _conversation(client, account)
    response = await client.get(
        f"/v1/sessions/{session['id']}/export", params={"format": "json"}, headers=account.headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    name = _attachment_name(response)
    assert name.endswith(f"{session['id']}.json") and ".." not in name
    exported = json.loads(response.text)
    assert set(exported) == {"session", "messages", "tool_executions", "exported_at"}
    assert exported["session"]["id"] == session["id"]
    assert exported["session"]["message_count"] == 2
    assert [m["role"] for m in exported["messages"]] == ["user", "assistant"]
    assert exported["messages"][0]["content"] == "What is **2+2**?"
    [tool] = exported["tool_executions"]
    assert (tool["tool_name"], tool["status"], tool["output"]) == (
        "calculator",
        "succeeded",
        {"result": 4},
    )
    assert tool["message_id"] == exported["messages"][1]["id"]
    # json is the default format
    default = await client.get(f"/v1/sessions/{session['id']}/export", headers=account.headers)
    assert json.loads(default.text)["messages"] == exported["messages"]


async def test_export_markdown_is_a_readable_transcript(
    client: httpx.AsyncClient, account: Account
) -> None:
    session = await _conversation(client, account)
    response = await client.get(
        f"/v1/sessions/{session['id']}/export",
        params={"format": "markdown"},
        headers=account.headers,
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/markdown")
    assert _attachment_name(response) == f"session-q3-plan-etc-{session['id']}.md"
    text = response.text
    assert text.startswith('# Q3 "plan" / ../etc\n')
    assert "### User" in text and "### Assistant" in text
    assert text.index("What is **2+2**?") < text.index("It is 4.")
    assert "## Tool executions" in text
    assert "`calculator` (builtin): succeeded" in text


async def test_export_of_many_messages_streams_them_all(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    from agenthub.sessions import export

    session = await new_session(client, account)
    for n in range(7):
        await post_message(client, account, session["id"], f"m{n}")
    original = export.BATCH
    export.BATCH = 3  # several batches
    try:
        response = await client.get(f"/v1/sessions/{session['id']}/export", headers=account.headers)
    finally:
        export.BATCH = original
    assert [m["content"] for m in response.json()["messages"]] == [f"m{n}" for n in range(7)]


async def test_export_rejects_an_unknown_format(
    client: httpx.AsyncClient, account: Account
) -> None:
    session = await new_session(client, account)
    response = await client.get(
        f"/v1/sessions/{session['id']}/export", params={"format": "pdf"}, headers=account.headers
    )
    assert error_fields(assert_problem(response, 422)) == {"format"}


# --- isolation, authentication, events ------------------------------------------------------


async def test_another_users_session_is_not_found_anywhere(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    mine = await new_session(client, account, title="secret plans")
    await post_message(client, account, mine["id"], "classified")
    intruder = await make_account()
    path = f"/v1/sessions/{mine['id']}"
    calls = [
        client.get(path, headers=intruder.headers),
        client.patch(path, json={"title": "pwned"}, headers=intruder.headers),
        client.delete(path, headers=intruder.headers),
        client.post(f"{path}/restore", headers=intruder.headers),
        client.get(f"{path}/export", headers=intruder.headers),
        client.get(f"{path}/messages", headers=intruder.headers),
        client.post(
            f"{path}/messages", json={"role": "user", "content": "x"}, headers=intruder.headers
        ),
        client.get(f"{path}/tools", headers=intruder.headers),
        client.post(f"{path}/tools", json={"tool_name": "x"}, headers=intruder.headers),
    ]
    for call in calls:
        response = await call
        body = expect(response, 404)
        assert "secret" not in response.text and "classified" not in response.text
        assert body["title"] == "Not Found"
    assert await listed(client, intruder) == []
    assert await listed(client, intruder, status="deleted") == []
    stats = expect(await client.get("/v1/sessions/stats", headers=intruder.headers), 200)
    assert stats["totals"]["sessions"] == 0
    # Untouched for the owner.
    own = await get_session(client, account, mine["id"])
    assert (own["title"], own["status"], own["message_count"]) == ("secret plans", "active", 1)


async def test_unknown_session_is_404(client: httpx.AsyncClient, account: Account) -> None:
    for path in ("/v1/sessions/ses_01JD0000000000000000000000", "/v1/sessions/whatever"):
        expect(await client.get(path, headers=account.headers), 404)


async def test_sessions_need_authentication(client: httpx.AsyncClient) -> None:
    expect(await client.get("/v1/sessions"), 401)
    expect(await client.post("/v1/sessions", json={"agent_type": "primary"}), 401)
    expect(await client.get("/v1/sessions/stats"), 401)


async def test_every_write_publishes_events(
    client: httpx.AsyncClient, account: Account, app: FastAPI
) -> None:
    events = record_events(app)
    old = [await new_session(client, account) for _ in range(LIMIT)]
    session = await new_session(client, account)
    channel, user_channel = f"session:{session['id']}", f"user:{account.id}"
    assert [e.data["id"] for e in events.named("session.updated", user_channel)][-2:] == [
        old[0]["id"],  # archived to make room
        session["id"],
    ]
    assert events.named("session.updated", f"session:{old[0]['id']}")[-1].data["status"] == (
        "archived"
    )

    path = f"/v1/sessions/{session['id']}"
    expect(await client.patch(path, json={"title": "Renamed"}, headers=account.headers), 200)
    assert events.named("session.updated", channel)[-1].data["title"] == "Renamed"
    assert events.named("session.updated", user_channel)[-1].data["title"] == "Renamed"

    expect(await client.delete(path, headers=account.headers), 204)
    for name in (channel, user_channel):
        [deleted] = events.named("session.deleted", name)
        assert deleted.data["status"] == "deleted"

    expect(await client.post(f"{path}/restore", headers=account.headers), 200)
    assert events.named("session.updated", channel)[-1].data["status"] == "active"
    for event in events.events:
        assert event.ts.endswith("Z")
        json.dumps(event.data)  # serializable as published

    # A rolled-back request publishes nothing.
    before = len(events.events)
    expect(await client.patch(path, json={"title": ""}, headers=account.headers), 422)
    expect(await client.post("/v1/sessions", json={}, headers=account.headers), 422)
    assert len(events.events) == before
