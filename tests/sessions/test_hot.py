"""The hot session reads (`sessions/hot.py`) answer the plain case in front of the router,
exactly as the routes answer it, and leave everything else to the routes."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from agenthub.db.base import utcnow
from conftest import AccountFactory, asgi_client, custom_app
from hot_support import ROUTED, Router, api_key, assert_answered_as_routed, hot_client
from session_support import expect, new_session, post_message
from support import Account, assert_problem, record_events, register, seed_session


async def test_plain_reads_answer_what_the_routes_answer_without_reaching_them(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    chat = await new_session(client, account)
    for n in range(3):
        await post_message(client, account, chat["id"], f"message {n}")
    for agent_type in ("writer", "coder", "critic"):
        await new_session(client, account, agent_type=agent_type)
    await seed_session(app, account.id, archived_at=utcnow())  # listed by neither
    await seed_session(app, account.id, deleted_at=utcnow())
    by_key = await api_key(client, account)
    base = f"/v1/sessions/{chat['id']}"
    paths = [
        base,
        f"{base}?messages=2",
        f"{base}/messages",
        f"{base}/messages?limit=2&order=desc",
        f"{base}/messages?order=asc",
        "/v1/sessions",
        "/v1/sessions?limit=2",
        "/v1/sessions?order=asc&limit=3",
    ]
    await assert_answered_as_routed(app, client, account, by_key, paths)


async def test_everything_else_goes_on_to_the_routes(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    chat = await new_session(client, account)
    message = await post_message(client, account, chat["id"])
    by_key = await api_key(client, account)
    base = f"/v1/sessions/{chat['id']}"
    bearer = account.headers
    requests = [
        (f"{base}/messages?after={message['id']}", bearer),  # a cursor
        (f"{base}/messages?role=user", bearer),  # a filter
        (f"{base}/messages?offset=1", bearer),
        (f"{base}/messages?limit=0", bearer),  # values the route refuses, or reads otherwise
        (f"{base}/messages?limit=201", bearer),
        (f"{base}/messages?limit=+5", bearer),
        (f"{base}/messages?order=sideways", bearer),
        (f"{base}/messages?limit=5&limit=6", bearer),
        (f"{base}?messages=201", bearer),
        (f"{base}/messages/{message['id']}", bearer),  # another route
        ("/v1/sessions/stats", bearer),
        (f"/v1/sessions?after={chat['id']}", bearer),
        ("/v1/sessions?include_archived=true", bearer),
        ("/v1/sessions?status=active", bearer),
        ("/v1/sessions?agent_type=primary", bearer),
        ("/v1/sessions?limit=0", bearer),
        ("/v1/sessions", by_key),
        ("/v1/sessions/not-an-id", bearer),
        (base, by_key),  # another credential
        (base, {}),
        (base, {"Authorization": "Bearer not.a.token"}),
        (base, {"Authorization": f"Basic {account.access_token}"}),
    ]
    router = Router()
    async with hot_client(app, router) as hot:
        for path, headers in requests:
            assert (await hot.get(path, headers=headers)).status_code == ROUTED, path
        assert (await hot.head(base, headers=bearer)).status_code == ROUTED
    assert len(router.reached) == len(requests) + 1


async def test_another_users_session_is_the_routes_404(
    client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    owner, other = await make_account(), await make_account()
    chat = await new_session(client, owner)
    by_key = await api_key(client, other)
    for path in (f"/v1/sessions/{chat['id']}", f"/v1/sessions/{chat['id']}/messages"):
        answered = await client.get(path, headers=other.headers)
        routed = await client.get(path, headers=by_key)
        assert assert_problem(answered, 404) == assert_problem(routed, 404)


async def test_an_ended_login_is_refused_at_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    chat = await new_session(client, account)
    logout = await client.post("/v1/auth/logout", headers=account.headers)
    assert logout.status_code == 204, logout.text
    for path in (
        "/v1/sessions",
        f"/v1/sessions/{chat['id']}",
        f"/v1/sessions/{chat['id']}/messages",
    ):
        assert_problem(await client.get(path, headers=account.headers), 401)


async def test_the_users_rate_limit_counts_each_hot_read_once(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        custom_app(database_url, tmp_path, rate_limit_user="4/minute") as app,
        asgi_client(app) as client,
    ):
        account = await register(client, "limited@example.com")
        chat = await new_session(client, account)  # the first of the four
        path = f"/v1/sessions/{chat['id']}/messages"
        for _ in range(3):
            expect(await client.get(path, headers=account.headers), 200)
        refused = await client.get(path, headers=account.headers)
        assert_problem(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1


async def test_a_plain_append_is_the_routes_append_without_reaching_it(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    chat = await new_session(client, account)
    by_key = await api_key(client, account)
    path = f"/v1/sessions/{chat['id']}/messages"
    body = {"role": "assistant", "content": "hi", "metadata": {"k": [1]}, "prompt_tokens": 3}
    events = record_events(app)
    router = Router()
    async with hot_client(app, router) as hot:
        answered = await hot.post(path, json=body, headers=account.headers)
    routed = await client.post(path, json=body, headers=by_key)
    assert router.reached == []
    assert answered.status_code == routed.status_code == 201, answered.text
    assert answered.headers["content-type"] == routed.headers["content-type"]
    mine, theirs = answered.json(), routed.json()
    assert mine.keys() == theirs.keys()
    assert {k: v for k, v in mine.items() if k not in ("id", "created_at")} == {
        k: v for k, v in theirs.items() if k not in ("id", "created_at")
    }
    assert [e.data for e in events.named("message.created", f"session:{chat['id']}")] == [
        mine,
        theirs,
    ]
    session = expect(await client.get(f"/v1/sessions/{chat['id']}", headers=by_key), 200)
    assert (session["message_count"], session["prompt_tokens"]) == (2, 6)


async def test_any_other_append_reaches_the_route_with_its_whole_body(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    chat = await new_session(client, account)
    archived = await seed_session(app, account.id, archived_at=utcnow())
    deleted = await seed_session(app, account.id, deleted_at=utcnow())
    by_key = await api_key(client, account)
    path = f"/v1/sessions/{chat['id']}/messages"
    plain = b'{"role": "user", "content": "hello"}'
    json_type = {"Content-Type": "application/json"}
    bearer = {**account.headers, **json_type}
    requests = [
        (path, bearer | {"Idempotency-Key": "k1"}, plain),
        (path, bearer, b'{"role": "user", "content": "hello", "respond": true}'),
        (path, bearer, b'{"role": "user", "content": ""}'),  # the route's 422
        (path, bearer, b'{"role": "user", "content": "x", "extra": 1}'),
        (path, bearer, b'{"role": "user", "content": '),
        (path, {**account.headers, "Content-Type": "text/plain"}, plain),
        (f"{path}?x=1", bearer, plain),
        (path, by_key | json_type, plain),
        (path, {**bearer, "Authorization": "Bearer not.a.token"}, plain),
        (f"/v1/sessions/{chat['id']}", bearer, plain),  # another route
        (f"/v1/sessions/{archived}/messages", bearer, plain),  # reactivates it
        (f"/v1/sessions/{deleted}/messages", bearer, plain),  # refused
    ]
    router = Router()
    async with hot_client(app, router) as hot:
        for url, headers, content in requests:
            sent = await hot.post(url, content=content, headers=headers)
            assert sent.status_code == ROUTED, (url, headers, content, sent.text)
    assert router.bodies == [content for _, _, content in requests]
    session = expect(await client.get(f"/v1/sessions/{chat['id']}", headers=by_key), 200)
    assert session["message_count"] == 0


async def test_appends_the_route_refuses_are_refused_alike(
    client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    owner, other = await make_account(), await make_account()
    chat = await new_session(client, owner)
    theirs = await new_session(client, other)
    owner_key, other_key = await api_key(client, owner), await api_key(client, other)
    body = {"role": "user", "content": "hello"}
    expect(await client.delete(f"/v1/sessions/{chat['id']}", headers=owner.headers), 204)
    for path, account, key, status in (
        (f"/v1/sessions/{chat['id']}/messages", owner, owner_key, 409),  # deleted
        (f"/v1/sessions/{theirs['id']}/messages", owner, owner_key, 404),  # another user's
    ):
        answered = await client.post(path, json=body, headers=account.headers)
        routed = await client.post(path, json=body, headers=key)
        assert assert_problem(answered, status) == assert_problem(routed, status)
    session = expect(await client.get(f"/v1/sessions/{theirs['id']}", headers=other_key), 200)
    assert session["message_count"] == 0
