"""Hot routes (`web.hot`, `sessions.hot`) in front of a stand-in router, to tell what they
answered from what they left to the routes."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import Receive, Scope, Send

from agenthub.app import HOT_READS
from agenthub.sessions.hot import HotAppend
from agenthub.web.hot import HotReads
from session_support import expect
from support import Account

ROUTED = 299  # what the stand-in router answers


class Router:
    """The app behind the hot routes: notes each request that reached it, and the body it
    could read."""

    def __init__(self) -> None:
        self.reached: list[str] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.reached.append(f"{scope['path']}?{scope['query_string'].decode()}")
        self.bodies.append(await Request(scope, receive).body())
        await PlainTextResponse("routed", ROUTED)(scope, receive, send)


def hot_client(app: FastAPI, router: Router) -> httpx.AsyncClient:
    """A client of the app's hot routes, with `router` where its routes would be."""
    database, settings = app.state.database, app.state.settings
    hot = HotReads(
        HotAppend(router, database=database, settings=settings),
        database=database,
        secret=settings.signing_key,
        reads=HOT_READS,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=hot), base_url="http://testserver")


async def api_key(client: httpx.AsyncClient, account: Account) -> dict[str, str]:
    """Headers with a new API key of the account's: a credential the hot reads leave to the
    routes, so these headers get the routes' own answers."""
    created = await client.post("/v1/user/api-keys", json={"name": "k"}, headers=account.headers)
    return {"X-API-Key": expect(created, 201)["key"]}


async def assert_answered_as_routed(
    app: FastAPI,
    client: httpx.AsyncClient,
    account: Account,
    by_key: dict[str, str],
    paths: list[str],
) -> None:
    """Each path, read with the account's Bearer token, is answered by the hot routes (the
    router never sees it) as its route answers it (read with an API key, which the hot
    routes leave to the route)."""
    router = Router()
    async with hot_client(app, router) as hot:
        for path in paths:
            answered = await hot.get(path, headers=account.headers)
            routed = await client.get(path, headers=by_key)
            assert answered.status_code == routed.status_code == 200, (path, answered.text)
            assert answered.headers["content-type"] == routed.headers["content-type"]
            assert answered.json() == routed.json(), path
    assert router.reached == []
