"""`/v1/sessions/{id}/tools` through the HTTP API: record a tool call, progress it to a final
status with its duration, list with filters, validation, isolation and events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conftest import AccountFactory
from session_support import (
    expect,
    new_session,
    post_message,
)
from support import Account, assert_problem, error_fields, ids, list_page, record_events

TOOL_FIELDS = {
    "id",
    "session_id",
    "message_id",
    "tool_name",
    "tool_type",
    "input",
    "output",
    "error",
    "status",
    "started_at",
    "finished_at",
    "duration_ms",
    "created_at",
    "updated_at",
}


@pytest.fixture
async def session_id(client: httpx.AsyncClient, account: Account) -> str:
    session = await new_session(client, account)
    return str(session["id"])


def path(session_id: str, tool_id: str | None = None) -> str:
    base = f"/v1/sessions/{session_id}/tools"
    return f"{base}/{tool_id}" if tool_id else base


async def record(
    client: httpx.AsyncClient, account: Account, session_id: str, **body: Any
) -> dict[str, Any]:
    body.setdefault("tool_name", "search_docs")
    tool: dict[str, Any] = expect(
        await client.post(path(session_id), json=body, headers=account.headers), 201
    )
    return tool


async def progress(
    client: httpx.AsyncClient, account: Account, session_id: str, tool_id: str, **body: Any
) -> httpx.Response:
    return await client.patch(path(session_id, tool_id), json=body, headers=account.headers)


async def test_a_tool_call_from_pending_to_succeeded(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    message = await post_message(client, account, session_id, "search please", role="assistant")
    tool = await record(
        client,
        account,
        session_id,
        tool_name="filesystem.read",
        tool_type="mcp",
        input={"path": "/etc/hosts"},
        message_id=message["id"],
    )
    assert set(tool) == TOOL_FIELDS
    assert tool["id"].startswith("tex_")
    assert (tool["status"], tool["tool_type"], tool["message_id"]) == (
        "pending",
        "mcp",
        message["id"],
    )
    assert tool["input"] == {"path": "/etc/hosts"}
    assert tool["started_at"] is None and tool["finished_at"] is None
    assert tool["duration_ms"] is None and tool["output"] is None

    running = expect(await progress(client, account, session_id, tool["id"], status="running"), 200)
    assert running["status"] == "running"
    assert running["started_at"] is not None and running["finished_at"] is None

    done = expect(
        await progress(
            client,
            account,
            session_id,
            tool["id"],
            status="succeeded",
            output="127.0.0.1 localhost",
        ),
        200,
    )
    assert (done["status"], done["output"]) == ("succeeded", "127.0.0.1 localhost")
    started = datetime.fromisoformat(done["started_at"])
    finished = datetime.fromisoformat(done["finished_at"])
    assert done["duration_ms"] == int((finished - started).total_seconds() * 1000)
    assert done["started_at"] == running["started_at"]
    fetched = expect(await client.get(path(session_id, tool["id"]), headers=account.headers), 200)
    assert fetched == done

    # Final is final.
    for change in ({"status": "failed"}, {"status": "running"}, {"output": "again"}, {}):
        expect(await progress(client, account, session_id, tool["id"], **change), 409)
    assert expect(await client.get(path(session_id, tool["id"]), headers=account.headers), 200) == (
        done
    )


async def test_duration_counts_from_the_given_start(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    started = datetime.now(UTC) - timedelta(seconds=3)
    tool = await record(
        client, account, session_id, status="running", started_at=started.isoformat()
    )
    assert tool["started_at"] == started.isoformat().replace("+00:00", "Z")
    failed = expect(
        await progress(
            client, account, session_id, tool["id"], status="failed", error="timeout after 3s"
        ),
        200,
    )
    assert (failed["status"], failed["error"]) == ("failed", "timeout after 3s")
    assert 3000 <= failed["duration_ms"] < 60_000
    # Created running without a start time: it starts now.
    now = await record(client, account, session_id, status="running")
    assert now["started_at"] == now["created_at"]


async def test_progress_never_goes_back(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    tool = await record(client, account, session_id, status="running")
    expect(await progress(client, account, session_id, tool["id"], status="pending"), 409)
    # Output may stream in while it runs.
    partial = expect(
        await progress(client, account, session_id, tool["id"], output={"rows": 1}), 200
    )
    assert (partial["status"], partial["output"]) == ("running", {"rows": 1})
    # A pending call may fail without ever running: it has no duration.
    never = await record(client, account, session_id)
    rejected = expect(
        await progress(client, account, session_id, never["id"], status="failed", error="denied"),
        200,
    )
    assert rejected["started_at"] is None and rejected["duration_ms"] is None
    assert rejected["finished_at"] is not None


async def test_list_filters_and_pages(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    made = []
    for n in range(6):
        tool = await record(
            client, account, session_id, tool_name=f"t{n}", tool_type=("mcp", "function")[n % 2]
        )
        made.append(tool["id"])
    expect(await progress(client, account, session_id, made[0], status="running"), 200)
    expect(await progress(client, account, session_id, made[3], status="running"), 200)
    other = await new_session(client, account)
    await record(client, account, other["id"])

    everything = await list_page(client, account, path(session_id))
    assert ids(everything) == made  # oldest first
    assert ids(await list_page(client, account, path(session_id), order="desc")) == made[::-1]
    mcp = await list_page(client, account, path(session_id), tool_type="mcp")
    assert ids(mcp) == made[0::2]
    running = await list_page(client, account, path(session_id), status="running")
    assert ids(running) == [made[0], made[3]]
    both = await list_page(
        client, account, path(session_id), status="running", tool_type="function"
    )
    assert ids(both) == [made[3]]

    first = await list_page(client, account, path(session_id), limit=4)
    assert (ids(first), first["has_more"], first["next_cursor"]) == (made[:4], True, made[3])
    rest = await list_page(client, account, path(session_id), limit=4, after=first["next_cursor"])
    assert (ids(rest), rest["has_more"]) == (made[4:], False)


async def test_bad_tool_requests_are_422(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    other = await new_session(client, account)
    elsewhere = await post_message(client, account, other["id"])
    bad_bodies: list[tuple[dict[str, Any], str]] = [
        ({}, "tool_name"),
        ({"tool_name": ""}, "tool_name"),
        ({"tool_name": "t", "tool_type": "Not A Slug"}, "tool_type"),
        ({"tool_name": "t", "status": "succeeded"}, "status"),
        ({"tool_name": "t", "input": "text"}, "input"),
        ({"tool_name": "t", "started_at": "yesterday"}, "started_at"),
        ({"tool_name": "t", "started_at": "1900-01-01T00:00:00Z"}, "started_at"),
        ({"tool_name": "t", "message_id": elsewhere["id"]}, "message_id"),
        ({"tool_name": "t", "output": "too early"}, "output"),
    ]
    for body, field in bad_bodies:
        response = await client.post(path(session_id), json=body, headers=account.headers)
        assert field in error_fields(assert_problem(response, 422)), body
    tool = await record(client, account, session_id)
    for change, field in (({"status": "done"}, "status"), ({"started_at": None}, "started_at")):
        response = await progress(client, account, session_id, tool["id"], **change)
        assert error_fields(assert_problem(response, 422)) == {field}
    for params, field in (
        ({"status": "done"}, "status"),
        ({"tool_type": "A B"}, "tool_type"),
        ({"limit": 0}, "limit"),
        ({"after": "msg_01JD0000000000000000000000"}, "after"),
    ):
        response = await client.get(path(session_id), params=params, headers=account.headers)
        assert error_fields(assert_problem(response, 422)) == {field}, params
    assert ids(await list_page(client, account, path(session_id))) == [tool["id"]]


async def test_tool_executions_of_others_are_not_found(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory, session_id: str
) -> None:
    tool = await record(client, account, session_id, input={"secret": "s3cr3t"})
    intruder = await make_account()
    theirs = await new_session(client, intruder)
    for where in (path(session_id, tool["id"]), path(theirs["id"], tool["id"])):
        response = await client.get(where, headers=intruder.headers)
        expect(response, 404)
        assert "s3cr3t" not in response.text
        expect(await client.patch(where, json={"status": "failed"}, headers=intruder.headers), 404)
    assert (await list_page(client, intruder, path(theirs["id"])))["data"] == []
    # Under another of the owner's own sessions, the id is unknown too.
    mine_too = await new_session(client, account)
    expect(await client.get(path(mine_too["id"], tool["id"]), headers=account.headers), 404)
    still = expect(await client.get(path(session_id, tool["id"]), headers=account.headers), 200)
    assert still["status"] == "pending"


async def test_idempotent_record_and_events(
    client: httpx.AsyncClient, account: Account, session_id: str, app: FastAPI
) -> None:
    events = record_events(app)
    headers = {**account.headers, "Idempotency-Key": "tool-call-1"}
    body = {"tool_name": "web.fetch", "tool_type": "builtin", "status": "running"}
    first = await client.post(path(session_id), json=body, headers=headers)
    again = await client.post(path(session_id), json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    tool = first.json()
    assert ids(await list_page(client, account, path(session_id))) == [tool["id"]]

    channel = f"session:{session_id}"
    [created] = events.named("tool.created", channel)
    assert created.data == tool
    done = expect(await progress(client, account, session_id, tool["id"], status="succeeded"), 200)
    [updated] = events.named("tool.updated", channel)
    assert updated.data == done
