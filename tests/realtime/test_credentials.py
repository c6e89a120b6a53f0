"""Realtime connections follow their credentials, on both deployments: a WebSocket or an SSE
stream ends (WebSocket: 4401) when its login ends, its API key is deleted or its account is
deleted, within a second and on every node; and when its access token expires, unless the
client sent a fresh one in an `auth` frame.

On the Redis deployment the credential ends through a second node; on the embedded one
(one node by design) through the same node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from conftest import Deployment
from processes import Server
from realtime_support import WsPeer, make_admin, sign_up, sse_stream, ws_peer
from support import PASSWORD, Account

pytestmark = pytest.mark.slow

Nodes = tuple[Server, Server]
PROMPT = 2.0  # seconds: "within a second", with a margin for a loaded machine
TOKEN_MINUTES = 4 / 60  # the brief node's access tokens live 4 s


@pytest.fixture(scope="module")
def nodes(deployment: Deployment, server: Server) -> Iterator[Nodes]:
    """(where the credential ends, where the connection is)."""
    with ExitStack() as stack:
        other = stack.enter_context(deployment.node()) if deployment.backend == "redis" else server
        yield server, other


@pytest.fixture(scope="module")
def brief(deployment: Deployment) -> Iterator[Server]:
    """A node whose access tokens expire after a few seconds."""
    with deployment.node(AGENTHUB_ACCESS_TOKEN_MINUTES=str(TOKEN_MINUTES)) as node:
        yield node


@pytest.fixture(scope="module")
def admin(deployment: Deployment, server: Server) -> Account:
    return make_admin(server.http, deployment.workdir, deployment.env)


async def closed(peer: WsPeer, wait: float) -> tuple[int | None, float]:
    """The close code the server sent and how long it took (frames are dropped)."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(wait):
            while True:
                await peer.ws.recv()
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), time.monotonic() - started
    except TimeoutError:
        raise AssertionError(f"still open after {wait} s") from None


async def second_login(base: str, account: Account) -> Account:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        response = await client.post(
            "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
        )
    assert response.status_code == 200, response.text
    tokens = response.json()
    return replace(
        account, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
    )


async def refreshed(base: str, account: Account) -> Account:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        response = await client.post(
            "/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
    assert response.status_code == 200, response.text
    tokens = response.json()
    return replace(
        account, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
    )


# How a login ends: (REST call on the first node, given the connection's account and another
# login of the same user and an administrator).
Ending = Callable[[httpx.AsyncClient, Account, Account, Account], Awaitable[httpx.Response]]


async def logout(api: httpx.AsyncClient, own: Account, _: Account, __: Account) -> httpx.Response:
    return await api.post("/v1/auth/logout", json={"refresh_token": own.refresh_token})


async def bearer_logout(
    api: httpx.AsyncClient, own: Account, _: Account, __: Account
) -> httpx.Response:
    return await api.post("/v1/auth/logout", headers=own.headers)


async def refresh_reuse(
    api: httpx.AsyncClient, own: Account, _: Account, __: Account
) -> httpx.Response:
    body = {"refresh_token": own.refresh_token}
    assert (await api.post("/v1/auth/refresh", json=body)).status_code == 200
    return await api.post("/v1/auth/refresh", json=body)


async def password_change(
    api: httpx.AsyncClient, _: Account, other: Account, __: Account
) -> httpx.Response:
    body = {"current_password": PASSWORD, "new_password": "an entirely new passphrase"}
    return await api.post("/v1/user/password", json=body, headers=other.headers)


async def session_end(
    api: httpx.AsyncClient, _: Account, other: Account, __: Account
) -> httpx.Response:
    listed = (await api.get("/v1/user/sessions", headers=other.headers)).json()["data"]
    (target,) = [item["id"] for item in listed if not item["current"]]
    return await api.delete(f"/v1/user/sessions/{target}", headers=other.headers)


async def admin_revoke(
    api: httpx.AsyncClient, own: Account, _: Account, admin: Account
) -> httpx.Response:
    return await api.delete(f"/v1/admin/users/{own.id}/sessions", headers=admin.headers)


async def account_deletion(
    api: httpx.AsyncClient, _: Account, other: Account, __: Account
) -> httpx.Response:
    return await api.delete("/v1/user", headers=other.headers)


ENDINGS: dict[str, tuple[Ending, int]] = {
    "logout": (logout, 204),
    "bearer-logout": (bearer_logout, 204),
    "refresh-reuse": (refresh_reuse, 401),
    "password-change": (password_change, 204),
    "session-end": (session_end, 204),
    "admin-revoke": (admin_revoke, 204),
    "account-deletion": (account_deletion, 204),
}


@pytest.mark.parametrize("ending", ENDINGS)
async def test_a_websocket_closes_when_its_login_ends(
    nodes: Nodes, admin: Account, ending: str
) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    other = await second_login(a.http, account)
    end, status = ENDINGS[ending]
    async with (
        ws_peer(b.ws, account.access_token) as peer,
        httpx.AsyncClient(base_url=a.http, timeout=10) as api,
    ):
        await peer.subscribe(f"user:{account.id}")
        response = await end(api, account, other, admin)
        assert response.status_code == status, response.text
        code, seconds = await closed(peer, 10)
    assert code == 4401
    assert seconds < PROMPT, f"closed {seconds:.2f} s after the login ended"


async def test_other_logins_keep_their_websockets(nodes: Nodes) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    other = await second_login(a.http, account)
    async with (
        ws_peer(b.ws, other.access_token) as staying,
        ws_peer(b.ws, account.access_token) as leaving,
        httpx.AsyncClient(base_url=a.http, timeout=10) as api,
    ):
        assert (await logout(api, account, other, other)).status_code == 204
        assert (await closed(leaving, 10))[0] == 4401
        await staying.barrier()
        await asyncio.sleep(0.5)  # time for a wrong close to arrive
        await staying.barrier()


async def test_an_api_key_websocket_closes_when_the_key_is_deleted(nodes: Nodes) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    async with httpx.AsyncClient(base_url=a.http, timeout=10) as api:
        created = await api.post("/v1/user/api-keys", json={}, headers=account.headers)
        key = created.json()
        async with (
            ws_peer(b.ws, key["key"]) as peer,
            ws_peer(b.ws, account.access_token) as by_token,
        ):
            deleted = await api.delete(f"/v1/user/api-keys/{key['id']}", headers=account.headers)
            assert deleted.status_code == 204
            code, seconds = await closed(peer, 10)
            await by_token.barrier()  # the login's connection is not the key's
    assert code == 4401
    assert seconds < PROMPT


async def test_an_sse_stream_ends_when_its_login_ends(nodes: Nodes) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    channel = f"user:{account.id}"
    async with sse_stream(b.http, channel, headers=account.headers) as reader:
        assert (await reader.message()).event == "subscribed"
        async with httpx.AsyncClient(base_url=a.http, timeout=10) as api:
            assert (await bearer_logout(api, account, account, account)).status_code == 204
        started = time.monotonic()
        with pytest.raises(StopAsyncIteration):
            await reader.message(wait=10)
        assert time.monotonic() - started < PROMPT


# -- expiry and the auth frame ---------------------------------------------------------------


async def test_an_expired_token_closes_unless_a_fresh_one_was_sent(brief: Server) -> None:
    account = await sign_up(brief.http)
    started = time.monotonic()
    async with (
        ws_peer(brief.ws, account.access_token) as plain,
        ws_peer(brief.ws, account.access_token) as renewed,
    ):
        await asyncio.sleep(TOKEN_MINUTES * 60 / 2)
        fresh = await refreshed(brief.http, account)
        reply = await renewed.request({"type": "auth", "token": fresh.access_token})
        assert reply["type"] == "authenticated", reply
        assert 0 < reply["expires_in"] <= TOKEN_MINUTES * 60

        code, _ = await closed(plain, 10)
        assert code == 4401
        lived = time.monotonic() - started
        assert lived >= TOKEN_MINUTES * 60 - 2, f"closed after {lived:.1f} s"
        await renewed.barrier()  # outlived the token it connected with
        code, _ = await closed(renewed, 10)
        assert code == 4401  # at the fresh token's expiry


async def test_an_sse_stream_ends_when_its_token_expires(brief: Server) -> None:
    account = await sign_up(brief.http)
    started = time.monotonic()
    async with sse_stream(brief.http, f"user:{account.id}", headers=account.headers) as reader:
        with pytest.raises(StopAsyncIteration):
            while True:
                await reader.message(wait=15)
    assert time.monotonic() - started >= TOKEN_MINUTES * 60 - 2


async def test_auth_frames_with_a_bad_token_are_refused(nodes: Nodes) -> None:
    a, b = nodes
    alice, bob = await sign_up(a.http), await sign_up(a.http)
    ended = await second_login(a.http, alice)
    async with httpx.AsyncClient(base_url=a.http, timeout=10) as api:
        assert (await bearer_logout(api, ended, ended, ended)).status_code == 204
    async with ws_peer(b.ws, alice.access_token) as peer:
        for token in (bob.access_token, ended.access_token, "not-a-token", "ahk_unknown"):
            reply = await peer.request({"type": "auth", "token": token})
            assert reply["type"] == "error" and reply["code"] == "unauthorized", reply
        invalid = await peer.request({"type": "auth", "token": ""})
        assert invalid["type"] == "error" and invalid["code"] == "invalid_frame", invalid
        reply = await peer.request({"type": "auth", "token": alice.access_token})
        assert reply["type"] == "authenticated", reply
        assert reply["expires_in"] > 60
        await peer.barrier()
