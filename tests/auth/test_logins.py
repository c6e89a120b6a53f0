"""Logins against real server processes, on both deployments: an access token dies with its
login (logout, refresh reuse, password change, ending a session, an administrator's revoke,
account deletion) at once and on every node; passwords are normalised and weak ones refused;
the CSRF token belongs to one login.

On the Redis deployment "the other node" is a second process; on the embedded deployment
(one node by design) it is the same process."""

from __future__ import annotations

import secrets
import unicodedata
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from typing import Any

import httpx
import pytest

from conftest import Deployment
from processes import Server, run
from realtime_support import create_admin, sign_up
from support import PASSWORD, Account, assert_problem, error_fields

pytestmark = pytest.mark.slow

Nodes = tuple[Server, Server]


@pytest.fixture(scope="module")
def nodes(deployment: Deployment, server: Server) -> Iterator[Nodes]:
    """Where a login ends and where its token is tried next."""
    with ExitStack() as stack:
        other = stack.enter_context(deployment.node()) if deployment.backend == "redis" else server
        yield server, other


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def status_with(base: str, token: str) -> int:
    """The status of `GET /v1/user/profile` on `base` with this access token."""
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        return (await client.get("/v1/user/profile", headers=bearer(token))).status_code


async def login(base: str, email: str, password: str = PASSWORD, **extra: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        return await client.post(
            "/v1/auth/login", json={"email": email, "password": password, **extra}
        )


async def second_login(base: str, account: Account) -> Account:
    """The same account signed in once more (another device)."""
    response = await login(base, account.email, account.password)
    assert response.status_code == 200, response.text
    tokens = response.json()
    return replace(
        account, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
    )


async def sessions(api: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await api.get("/v1/user/sessions", headers=account.headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def actions(api: httpx.AsyncClient, account: Account) -> list[str]:
    response = await api.get("/v1/user/audit", headers=account.headers)
    assert response.status_code == 200, response.text
    return [event["action"] for event in response.json()["data"]]


# -- access tokens die with their login ------------------------------------------------------


async def test_logout_ends_the_access_token_on_every_node(nodes: Nodes) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    other = await second_login(a.http, account)
    assert await status_with(b.http, account.access_token) == 200

    async with httpx.AsyncClient(base_url=a.http, timeout=10) as client:
        body = {"refresh_token": account.refresh_token}
        assert (await client.post("/v1/auth/logout", json=body)).status_code == 204

    assert await status_with(b.http, account.access_token) == 401
    assert await status_with(a.http, account.access_token) == 401
    assert await status_with(b.http, other.access_token) == 200  # another login lives on


async def test_logout_with_only_a_bearer_token_ends_its_login(nodes: Nodes) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    async with httpx.AsyncClient(base_url=a.http, timeout=10) as client:
        response = await client.post("/v1/auth/logout", headers=account.headers)
        assert response.status_code == 204
        refreshed = await client.post(
            "/v1/auth/refresh", json={"refresh_token": account.refresh_token}
        )
        assert_problem(refreshed, 401)
    assert await status_with(b.http, account.access_token) == 401


async def test_refresh_reuse_ends_the_access_tokens_of_the_login(nodes: Nodes) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    async with httpx.AsyncClient(base_url=a.http, timeout=10) as client:
        body = {"refresh_token": account.refresh_token}
        rotated = (await client.post("/v1/auth/refresh", json=body)).json()
        assert await status_with(b.http, rotated["access_token"]) == 200
        assert_problem(await client.post("/v1/auth/refresh", json=body), 401)  # reuse
    for token in (account.access_token, rotated["access_token"]):
        assert await status_with(b.http, token) == 401


async def test_password_change_keeps_this_login_and_ends_the_others(
    nodes: Nodes, api: httpx.AsyncClient
) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    other = await second_login(a.http, account)
    new_password = "a different passphrase"
    response = await api.post(
        "/v1/user/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=account.headers,
    )
    assert response.status_code == 204, response.text

    assert await status_with(b.http, other.access_token) == 401
    assert await status_with(b.http, account.access_token) == 200
    assert_problem(await login(b.http, account.email, PASSWORD), 401)
    assert (await login(b.http, account.email, new_password)).status_code == 200
    assert "auth.password_changed" in await actions(api, account)


async def test_password_change_needs_the_current_password(
    server: Server, api: httpx.AsyncClient
) -> None:
    account = await sign_up(server.http)
    response = await api.post(
        "/v1/user/password",
        json={"current_password": "not my password", "new_password": "a different passphrase"},
        headers=account.headers,
    )
    assert "current password" in assert_problem(response, 403)["detail"]
    assert (await login(server.http, account.email)).status_code == 200
    assert "auth.password_change_failed" in await actions(api, account)


async def test_sessions_list_the_logins_and_end_one(nodes: Nodes, api: httpx.AsyncClient) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    async with httpx.AsyncClient(base_url=a.http, timeout=10) as client:
        response = await client.post(
            "/v1/auth/login",
            json={"email": account.email, "password": PASSWORD},
            headers={"User-Agent": "phone-app/1.0"},
        )
    phone = replace(account, access_token=response.json()["access_token"])

    listed = await sessions(api, account)
    assert len(listed) == 2
    for item in listed:
        assert set(item) == {"id", "created_at", "last_used_at", "expires_at", "client", "current"}
        assert set(item["client"]) == {"ip", "user_agent"}
        assert item["client"]["ip"] == "127.0.0.1"
    current = [item for item in listed if item["current"]]
    assert len(current) == 1
    phone_login = next(item for item in listed if not item["current"])
    assert phone_login["client"]["user_agent"] == "phone-app/1.0"

    ended = await api.delete(f"/v1/user/sessions/{phone_login['id']}", headers=account.headers)
    assert ended.status_code == 204
    assert await status_with(b.http, phone.access_token) == 401
    assert [item["id"] for item in await sessions(api, account)] == [current[0]["id"]]
    assert "auth.session_ended" in await actions(api, account)
    again = await api.delete(f"/v1/user/sessions/{phone_login['id']}", headers=account.headers)
    assert_problem(again, 404)


async def test_another_users_session_is_404(server: Server, api: httpx.AsyncClient) -> None:
    alice, bob = await sign_up(server.http), await sign_up(server.http)
    bobs = (await sessions(api, bob))[0]["id"]
    response = await api.delete(f"/v1/user/sessions/{bobs}", headers=alice.headers)
    assert_problem(response, 404)
    assert await status_with(server.http, bob.access_token) == 200


async def test_an_administrator_ends_every_login_of_a_user(
    deployment: Deployment, nodes: Nodes, api: httpx.AsyncClient
) -> None:
    a, b = nodes
    admin = await create_admin(a.http, deployment.workdir, deployment.env)
    account = await sign_up(a.http)
    other = await second_login(a.http, account)

    response = await api.delete(f"/v1/admin/users/{account.id}/sessions", headers=admin.headers)
    assert response.status_code == 204, response.text
    for token in (account.access_token, other.access_token):
        assert await status_with(b.http, token) == 401
    audit = await api.get(
        "/v1/admin/audit",
        params={"user_id": account.id, "action": "admin.sessions_ended"},
        headers=admin.headers,
    )
    assert [e["actor_id"] for e in audit.json()["data"]] == [admin.id]

    assert_problem(
        await api.delete(f"/v1/admin/users/{account.id}/sessions", headers=other.headers), 401
    )
    unknown = await api.delete("/v1/admin/users/usr_unknown/sessions", headers=admin.headers)
    assert_problem(unknown, 404)


async def test_only_administrators_end_other_users_logins(
    server: Server, api: httpx.AsyncClient
) -> None:
    alice, bob = await sign_up(server.http), await sign_up(server.http)
    response = await api.delete(f"/v1/admin/users/{bob.id}/sessions", headers=alice.headers)
    assert_problem(response, 403)
    assert await status_with(server.http, bob.access_token) == 200


async def test_account_deletion_ends_its_tokens_on_every_node(nodes: Nodes) -> None:
    a, b = nodes
    account = await sign_up(a.http)
    async with httpx.AsyncClient(base_url=a.http, timeout=10) as client:
        assert (await client.delete("/v1/user", headers=account.headers)).status_code == 204
    assert await status_with(b.http, account.access_token) == 401


async def test_cli_token_is_a_login_of_its_own(
    deployment: Deployment, server: Server, api: httpx.AsyncClient
) -> None:
    account = await sign_up(server.http)
    done = run(["token", "--email", account.email], deployment.workdir, deployment.env)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    cli = replace(account, access_token=token)
    listed = await sessions(api, cli)
    assert [item["client"]["user_agent"] for item in listed if item["current"]] == ["agenthub-cli"]
    assert (await api.post("/v1/auth/logout", headers=cli.headers)).status_code == 204
    assert await status_with(server.http, token) == 401


# -- passwords -------------------------------------------------------------------------------


async def register(api: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await api.post("/v1/auth/register", json={"email": email, "password": password})


def new_email() -> str:
    return f"pw-{secrets.token_hex(3)}@example.com"


async def test_passwords_are_compared_in_one_unicode_form(
    server: Server, api: httpx.AsyncClient
) -> None:
    composed = unicodedata.normalize("NFC", "Crème brûlée à minuit")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    for registered, typed in ((composed, decomposed), (decomposed, composed)):
        email = new_email()
        assert (await register(api, email, registered)).status_code == 201
        assert (await login(server.http, email, typed)).status_code == 200
        assert (await login(server.http, email, registered)).status_code == 200


@pytest.mark.parametrize(
    "password",
    ["password", "Password123", "QWERTY123", "iloveyou", "1q2w3e4r", "contraseña"],
)
async def test_common_passwords_are_refused(api: httpx.AsyncClient, password: str) -> None:
    response = await register(api, new_email(), password)
    body = assert_problem(response, 422)
    assert error_fields(body) == {"password"}
    assert "common" in body["detail"]


async def test_passwords_made_of_the_email_are_refused(api: httpx.AsyncClient) -> None:
    local = f"margarethe{secrets.token_hex(2)}"
    email = f"{local}@example.com"
    for password in (email, email.upper(), f"{local}-2026!", f"I am {local.capitalize()}"):
        body = assert_problem(await register(api, email, password), 422)
        assert error_fields(body) == {"password"}
        assert "email" in body["detail"]
    assert (await register(api, email, "tulips in the rain")).status_code == 201


async def test_a_weak_new_password_is_refused_and_nothing_changes(
    server: Server, api: httpx.AsyncClient
) -> None:
    account = await sign_up(server.http)
    response = await api.post(
        "/v1/user/password",
        json={"current_password": PASSWORD, "new_password": "password1"},
        headers=account.headers,
    )
    assert error_fields(assert_problem(response, 422)) == {"new_password"}
    assert (await login(server.http, account.email)).status_code == 200


def test_cli_user_create_refuses_a_common_password(deployment: Deployment) -> None:
    email = new_email()
    done = run(
        ["user", "create", "--email", email, "--password", "qwertyuiop"],
        deployment.workdir,
        deployment.env,
    )
    assert done.returncode == 1
    assert "common" in done.stderr


# -- CSRF ------------------------------------------------------------------------------------


async def cookie_login(base: str, account: Account) -> tuple[str, str]:
    """A cookie login: its access cookie and CSRF token."""
    response = await login(base, account.email, cookie=True)
    assert response.status_code == 200, response.text
    return response.cookies["access_token"], response.json()["csrf_token"]


async def test_a_csrf_token_of_another_login_is_refused(
    server: Server, api: httpx.AsyncClient
) -> None:
    account = await sign_up(server.http)
    access, csrf = await cookie_login(server.http, account)
    _, other_csrf = await cookie_login(server.http, account)
    assert csrf != other_csrf

    def write(token: str) -> dict[str, str]:
        return {"Cookie": f"access_token={access}; csrf_token={token}", "X-CSRF-Token": token}

    body = {"username": "csrf_check"}
    refused = await api.patch("/v1/user/profile", json=body, headers=write(other_csrf))
    assert_problem(refused, 403)
    accepted = await api.patch("/v1/user/profile", json=body, headers=write(csrf))
    assert accepted.status_code == 200, accepted.text
