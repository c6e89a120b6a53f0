"""`/v1/sessions/{id}/messages` through the HTTP API: append with exact session counters
(also under concurrency), the `respond` flag, validation, and paging by cursor and offset."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, update

from agenthub.core.ids import new_id
from agenthub.db.base import utcnow
from agenthub.db.models.sessions import ChatSession, Message
from conftest import AccountFactory
from jobs_support import wait_job
from session_support import (
    expect,
    get_session,
    new_session,
    post_message,
)
from support import Account, assert_problem, error_fields, ids, list_page, record_events

MESSAGE_FIELDS = {
    "id",
    "session_id",
    "role",
    "content",
    "metadata",
    "prompt_tokens",
    "completion_tokens",
    "created_at",
    "tool_calls",
    "tool_call_id",
}
MANY = 250
ROLES = ("user", "assistant", "system", "tool")


def path(session_id: str) -> str:
    return f"/v1/sessions/{session_id}/messages"


@pytest.fixture
async def session_id(client: httpx.AsyncClient, account: Account) -> str:
    session = await new_session(client, account)
    return str(session["id"])


async def test_append_updates_the_session_in_the_same_request(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    before = await get_session(client, account, session_id)
    message = await post_message(
        client,
        account,
        session_id,
        "Why is the build red?",
        metadata={"client": "ios", "attachments": []},
        prompt_tokens=12,
        completion_tokens=0,
    )
    assert set(message) == MESSAGE_FIELDS
    assert message["id"].startswith("msg_")
    assert message["session_id"] == session_id
    assert (message["role"], message["content"]) == ("user", "Why is the build red?")
    assert message["metadata"] == {"client": "ios", "attachments": []}
    assert message["created_at"].endswith("Z")

    reply = await post_message(
        client, account, session_id, "A flaky test.", role="assistant", completion_tokens=40
    )
    after = await get_session(client, account, session_id)
    assert after["message_count"] == 2
    assert (after["prompt_tokens"], after["completion_tokens"]) == (12, 40)
    assert after["last_activity_at"] == reply["created_at"]
    assert datetime.fromisoformat(after["last_activity_at"]) > datetime.fromisoformat(
        before["last_activity_at"]
    )
    fetched = expect(
        await client.get(f"{path(session_id)}/{message['id']}", headers=account.headers), 200
    )
    assert fetched == message


async def test_every_role_is_accepted(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    for role in ROLES:
        assert (await post_message(client, account, session_id, role=role))["role"] == role


async def test_respond_returns_the_message_and_its_job(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    created = await post_message(client, account, session_id, "Summarize this", respond=True)
    assert set(created) == {"message", "job"}
    assert created["message"]["content"] == "Summarize this"
    job = created["job"]
    assert (job["kind"], job["session_id"]) == ("agent.reply", session_id)
    assert job["input"] == {"session_id": session_id, "message_id": created["message"]["id"]}
    assert (await wait_job(client, account, job["id"]))["status"] == "completed"
    plain = await post_message(client, account, session_id, respond=False)
    assert set(plain) == MESSAGE_FIELDS
    response = await client.post(
        path(session_id),
        json={"role": "assistant", "content": "x", "respond": True},
        headers=account.headers,
    )
    assert error_fields(assert_problem(response, 422)) == {"respond"}


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"role": "robot", "content": "x"}, "role"),
    ({"role": "USER", "content": "x"}, "role"),
    ({"content": "x"}, "role"),
    ({"role": "user", "content": ""}, "content"),
    ({"role": "user", "content": "x" * 100_001}, "content"),
    ({"role": "user"}, "content"),
    ({"role": "user", "content": "x", "metadata": []}, "metadata"),
    ({"role": "user", "content": "x", "prompt_tokens": -1}, "prompt_tokens"),
    ({"role": "user", "content": "x", "completion_tokens": 10**12}, "completion_tokens"),
    ({"role": "user", "content": "x", "respond": "maybe"}, "respond"),
    ({"role": "user", "content": "x", "session_id": "ses_x"}, "session_id"),
]


async def test_bad_messages_are_422_and_change_nothing(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    for body, field in BAD_BODIES:
        response = await client.post(path(session_id), json=body, headers=account.headers)
        assert field in error_fields(assert_problem(response, 422)), body
    longest = await post_message(client, account, session_id, "x" * 100_000)
    assert len(longest["content"]) == 100_000
    assert (await get_session(client, account, session_id))["message_count"] == 1


async def test_concurrent_appends_keep_exact_counts(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    posts = [
        post_message(client, account, session_id, f"n{n}", prompt_tokens=n, completion_tokens=1)
        for n in range(20)
    ]
    created = await asyncio.gather(*posts)
    assert len({m["id"] for m in created}) == 20
    session = await get_session(client, account, session_id)
    assert session["message_count"] == 20
    assert session["prompt_tokens"] == sum(range(20))
    assert session["completion_tokens"] == 20
    assert session["last_activity_at"] == max(m["created_at"] for m in created)
    page = await list_page(client, account, path(session_id), limit=200)
    assert sorted(ids(page)) == sorted(m["id"] for m in created)


async def test_idempotent_append_is_stored_once(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    headers = {**account.headers, "Idempotency-Key": "send-1"}
    body = {"role": "user", "content": "only once"}
    first = await client.post(path(session_id), json=body, headers=headers)
    again = await client.post(path(session_id), json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert (await get_session(client, account, session_id))["message_count"] == 1


async def test_appends_publish_message_and_session_events(
    client: httpx.AsyncClient, account: Account, session_id: str, app: FastAPI
) -> None:
    events = record_events(app)
    message = await post_message(client, account, session_id, "ping", prompt_tokens=2)
    [created] = events.named("message.created", f"session:{session_id}")
    assert created.data == message
    for channel in (f"session:{session_id}", f"user:{account.id}"):
        updated = events.named("session.updated", channel)[-1]
        assert (updated.data["id"], updated.data["message_count"]) == (session_id, 1)
        assert updated.data["prompt_tokens"] == 2


# --- paging ---------------------------------------------------------------------------------


@pytest.fixture
async def history(app: FastAPI, account: Account, session_id: str) -> list[str]:
    """250 messages in one session (roles in turn), their ids in chronological order.

    Written in one bulk insert, as an import would: appending is tested above, paging here.
    """
    rows: list[dict[str, Any]] = [
        {
            "id": new_id("msg"),
            "user_id": account.id,
            "session_id": session_id,
            "role": ROLES[n % 4],
            "content": f"m{n}",
            "meta": {},
            "created_at": utcnow(),
        }
        for n in range(MANY)
    ]
    async with app.state.database.transaction() as db:
        await db.execute(insert(Message), rows)
        await db.execute(
            update(ChatSession).where(ChatSession.id == session_id).values(message_count=MANY)
        )
    return [row["id"] for row in rows]


async def walk(
    client: httpx.AsyncClient, account: Account, session_id: str, **params: Any
) -> list[str]:
    """Follow `next_cursor` in the direction of `params` until the end."""
    direction = "before" if "before" in params else "after"
    seen: list[str] = []
    pages = 0
    while True:
        page = await list_page(client, account, path(session_id), **params)
        batch = ids(page)
        seen = batch + seen if direction == "before" else seen + batch
        pages += 1
        assert pages <= MANY, "paging does not terminate"
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return seen
        params[direction] = page["next_cursor"]


async def test_cursor_paging_returns_every_message_once_in_order(
    client: httpx.AsyncClient, account: Account, session_id: str, history: list[str]
) -> None:
    default = await list_page(client, account, path(session_id))
    assert ids(default) == history[:50]  # chronological, 50 by default
    assert default["has_more"] is True
    assert default["next_cursor"] == history[49]

    assert await walk(client, account, session_id, limit=37) == history
    assert await walk(client, account, session_id, limit=37, order="desc") == history[::-1]
    # Backwards from the newest: newer pages first, each still in list order.
    assert await walk(client, account, session_id, limit=40, before=history[-1]) == history[:-1]
    newest = await list_page(client, account, path(session_id), order="desc", limit=3)
    assert ids(newest) == history[:-4:-1]
    middle = await list_page(client, account, path(session_id), limit=5, after=history[99])
    assert ids(middle) == history[100:105]
    end = await list_page(client, account, path(session_id), after=history[-1])
    assert end == {"data": [], "has_more": False, "next_cursor": None}


async def test_offset_paging_and_role_filter(
    client: httpx.AsyncClient, account: Account, session_id: str, history: list[str]
) -> None:
    seen: list[str] = []
    for offset in range(0, MANY, 60):
        page = await list_page(client, account, path(session_id), limit=60, offset=offset)
        seen += ids(page)
        assert page["has_more"] is (offset + 60 < MANY)
    assert seen == history
    last = await list_page(client, account, path(session_id), limit=3, offset=2, order="desc")
    assert ids(last) == [history[-3], history[-4], history[-5]]
    beyond = await list_page(client, account, path(session_id), offset=MANY)
    assert beyond["data"] == []

    tools = await list_page(client, account, path(session_id), role="tool", limit=200)
    assert ids(tools) == history[3::4]
    assert {m["role"] for m in tools["data"]} == {"tool"}
    assistant = await walk(client, account, session_id, role="assistant", limit=16)
    assert assistant == history[1::4]


async def test_bad_list_parameters_are_422(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> None:
    message = await post_message(client, account, session_id)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"limit": 0}, "limit"),
        ({"limit": 201}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"role": "robot"}, "role"),
        ({"order": "random"}, "order"),
        ({"offset": -1}, "offset"),
        ({"after": "not-a-cursor"}, "after"),
        ({"before": "ses_01JD0000000000000000000000"}, "before"),
        ({"after": message["id"], "before": message["id"]}, "after"),
        ({"after": message["id"], "offset": 0}, "offset"),
        ({"before": message["id"], "offset": 5}, "offset"),
    ]
    for params, field in cases:
        response = await client.get(path(session_id), params=params, headers=account.headers)
        assert error_fields(assert_problem(response, 422)) == {field}, params


# --- isolation ------------------------------------------------------------------------------


async def test_messages_of_other_sessions_and_users_are_not_found(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory, session_id: str
) -> None:
    message = await post_message(client, account, session_id, "mine")
    other_session = await new_session(client, account)
    expect(
        await client.get(f"{path(other_session['id'])}/{message['id']}", headers=account.headers),
        404,
    )
    intruder = await make_account()
    theirs = await new_session(client, intruder)
    expect(await client.get(f"{path(session_id)}/{message['id']}", headers=intruder.headers), 404)
    expect(await client.get(f"{path(theirs['id'])}/{message['id']}", headers=intruder.headers), 404)
    expect(
        await client.post(
            path(session_id), json={"role": "user", "content": "x"}, headers=intruder.headers
        ),
        404,
    )
    assert (await list_page(client, intruder, path(theirs["id"])))["data"] == []
    assert (await get_session(client, account, session_id))["message_count"] == 1
