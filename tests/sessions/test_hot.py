"""The hot session reads (`sessions/hot.py`) answer the plain case in front of the router,
exactly as the routes answer it, and leave everything else to the routes."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from agenthub.sessions.hot import HotSessionReads
from conftest import AccountFactory, asgi_client, custom_app
from session_support import expect, new_session, post_message
from support import Account, assert_problem, register

ROUTED = 299  # what the stand-in router answers


class Router:
    """The app behind the hot reads: notes each request that reached it."""

    def __init__(self) -> None:
        self.reached: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.reached.append(f"{scope['path']}?{scope['query_string'].decode()}")
        await PlainTextResponse("routed", ROUTED)(scope, receive, send)


def hot_client(app: FastAPI, router: Router) -> httpx.AsyncClient:
    hot = HotSessionReads(
        router, database=app.state.database, secret=app.state.settings.signing_key
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=hot), base_url="http://testserver")


async def api_key(client: httpx.AsyncClient, account: Account) -> dict[str, str]:
    """Headers with a new API key of the account's: a credential the hot reads leave to the
    routes, so these headers get the routes' own answers."""
    created = await client.post("/v1/user/api-keys", json={"name": "k"}, headers=account.headers)
    return {"X-API-Key": expect(created, 201)["key"]}


async def test_plain_reads_answer_what_the_routes_answer_without_reaching_them(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    chat = await new_session(client, account)
    for n in range(3):
        await post_message(client, account, chat["id"], f"message {n}")
    by_key = await api_key(client, account)
    base = f"/v1/sessions/{chat['id']}"
    router = Router()
    async with hot_client(app, router) as hot:
        for path in (
            base,
            f"{base}?messages=2",
            f"{base}/messages",
            f"{base}/messages?limit=2&order=desc",
            f"{base}/messages?order=asc",
        ):
            answered = await hot.get(path, headers=account.headers)
            routed = await client.get(path, headers=by_key)
            assert answered.status_code == routed.status_code == 200, (path, answered.text)
            assert answered.headers["content-type"] == routed.headers["content-type"]
            assert answered.json() == routed.json(), path
    assert router.reached == []


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
    for path in (f"/v1/sessions/{chat['id']}", f"/v1/sessions/{chat['id']}/messages"):
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
