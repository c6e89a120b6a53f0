"""`/v1/auth/*` through the HTTP API: register, login, tokens, refresh rotation, logout,
cookie mode with CSRF, and login rate limits."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from agenthub.db.models.auth import RefreshToken, User
from conftest import TEST_SECRET, AccountFactory, asgi_client, custom_app
from support import (
    PASSWORD,
    Account,
    assert_iso_utc,
    assert_problem,
    error_fields,
    list_page,
    profile_status,
)


def new_email() -> str:
    return f"user-{secrets.token_hex(4)}@example.com"


def set_cookies(response: httpx.Response) -> dict[str, Morsel[str]]:
    """Each Set-Cookie of the response, by cookie name, with its attributes."""
    cookies: dict[str, Morsel[str]] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        cookies.update(jar)
    return cookies


async def register(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any
) -> httpx.Response:
    return await client.post(
        "/v1/auth/register", json={"email": email, "password": password, **extra}
    )


async def login(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD, **extra: Any
) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password, **extra})


async def own_actions(client: httpx.AsyncClient, account: Account) -> list[str]:
    page = await list_page(client, account, "/v1/user/audit")
    return [event["action"] for event in page["data"]]


async def relogin(client: httpx.AsyncClient, account: Account) -> Account:
    """The account in a new login (after its own was ended)."""
    response = await login(client, account.email, account.password)
    assert response.status_code == 200, response.text
    tokens = response.json()
    return replace(
        account, access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
    )


# --- register -------------------------------------------------------------------------------


async def test_register_returns_the_new_user(client: httpx.AsyncClient) -> None:
    email = new_email()
    response = await register(client, email, username="ada.l")
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    user = response.json()
    assert set(user) == {"id", "email", "username", "is_admin", "created_at"}
    assert user["id"].startswith("usr_")
    assert user["email"] == email
    assert user["username"] == "ada.l"
    assert user["is_admin"] is False
    created = assert_iso_utc(user["created_at"])
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=1)
    assert PASSWORD not in response.text
    assert "argon2" not in response.text and "hash" not in response.text


async def test_register_without_username(client: httpx.AsyncClient) -> None:
    response = await register(client, new_email())
    assert response.status_code == 201
    assert response.json()["username"] is None


async def test_register_duplicate_email_is_409(client: httpx.AsyncClient) -> None:
    email = new_email()
    assert (await register(client, email)).status_code == 201
    body = assert_problem(await register(client, email, "another password"), 409)
    assert "already exists" in body["detail"]


async def test_register_duplicate_email_ignores_case(client: httpx.AsyncClient) -> None:
    first = await register(client, "Mixed.Case@Example.com")
    assert first.status_code == 201
    assert first.json()["email"] == "mixed.case@example.com"
    assert_problem(await register(client, "MIXED.CASE@example.COM"), 409)
    assert_problem(await register(client, "mixed.case@example.com"), 409)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "short"}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "role": "admin"}, "role"),
        ({"email": "a@example.com", "password": PASSWORD, "is_admin": True}, "is_admin"),
        ({"email": "a@example.com", "password": PASSWORD, "username": "no spaces"}, "username"),
        ({"email": "a@example.com"}, "password"),
        ({"password": PASSWORD}, "email"),
    ],
    ids=[
        "bad-email",
        "short-password",
        "unknown-field",
        "is-admin",
        "bad-username",
        "no-pw",
        "no-email",
    ],
)
async def test_register_validation_errors(
    client: httpx.AsyncClient, payload: dict[str, Any], field: str
) -> None:
    body = assert_problem(await client.post("/v1/auth/register", json=payload), 422)
    assert field in error_fields(body)
    # Nothing was created: the address can still register.
    assert (await register(client, "a@example.com")).status_code == 201


async def test_register_validation_error_does_not_echo_the_password(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/v1/auth/register", json={"email": "nope", "password": "s3cret-pass-xyz"}
    )
    assert_problem(response, 422)
    assert "s3cret-pass-xyz" not in response.text


async def test_register_malformed_json_is_a_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/auth/register",
        content=b'{"email": "a@example.com", "password": ',
        headers={"content-type": "application/json"},
    )
    assert_problem(response, 400)


async def test_register_idempotency_key_replays_the_first_response(
    client: httpx.AsyncClient,
) -> None:
    payload = {"email": new_email(), "password": PASSWORD}
    headers = {"Idempotency-Key": "register-1"}
    first = await client.post("/v1/auth/register", json=payload, headers=headers)
    second = await client.post("/v1/auth/register", json=payload, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    # Without the key, the same body is a duplicate registration.
    assert_problem(await client.post("/v1/auth/register", json=payload), 409)


async def test_register_idempotency_key_with_another_body_is_422(
    client: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "register-2"}
    created = await client.post(
        "/v1/auth/register", json={"email": new_email(), "password": PASSWORD}, headers=headers
    )
    assert created.status_code == 201
    other = new_email()
    reused = await client.post(
        "/v1/auth/register", json={"email": other, "password": PASSWORD}, headers=headers
    )
    body = assert_problem(reused, 422)
    assert "Idempotency-Key" in error_fields(body)
    # The second account was not created.
    assert_problem(await login(client, other), 401)


async def test_concurrent_registrations_of_one_email_create_one_account(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    responses = await asyncio.gather(*(register(client, email) for _ in range(3)))
    assert sorted(r.status_code for r in responses) == [201, 409, 409]
    for response in responses:
        if response.status_code == 409:
            assert_problem(response, 409)


# --- login ----------------------------------------------------------------------------------


async def test_login_returns_a_token_pair(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    response = await login(client, email)
    assert response.status_code == 200
    tokens = response.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    assert tokens["access_token"].count(".") == 2
    assert tokens["refresh_token"] and tokens["refresh_token"] != tokens["access_token"]
    assert "set-cookie" not in response.headers
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    profile = await client.get("/v1/user/profile", headers=headers)
    assert profile.status_code == 200
    assert profile.json()["email"] == email


async def test_a_password_stored_before_normalisation_still_signs_in(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    """A hash made from a decomposed (NFD) password, as accounts created before passwords
    were normalised may have: the password as typed then still matches, and is stored again
    in NFC, after which the composed form matches too."""
    decomposed = unicodedata.normalize("NFD", "Crème brûlée à minuit")
    composed = unicodedata.normalize("NFC", decomposed)
    email = new_email()
    await register(client, email)
    async with app.state.database.transaction() as db:
        await db.execute(
            update(User)
            .where(User.email == email)
            .values(password_hash=app.state.hasher.hash(decomposed))
        )
    assert_problem(await login(client, email, composed), 401)
    assert (await login(client, email, decomposed)).status_code == 200
    assert (await login(client, email, composed)).status_code == 200


async def test_login_email_is_case_insensitive(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    assert (await login(client, email.upper())).status_code == 200


async def test_each_login_issues_new_tokens(client: httpx.AsyncClient, account: Account) -> None:
    again = (await login(client, account.email)).json()
    assert again["access_token"] != account.access_token
    assert again["refresh_token"] != account.refresh_token


async def test_login_wrong_password_and_unknown_email_look_the_same(
    client: httpx.AsyncClient, account: Account
) -> None:
    wrong = assert_problem(await login(client, account.email, "wrong password"), 401)
    unknown = assert_problem(await login(client, new_email()), 401)
    assert wrong["detail"] == unknown["detail"]
    assert wrong["title"] == unknown["title"] == "Unauthorized"
    assert "wrong password" not in json.dumps(wrong)


async def test_failed_and_successful_logins_are_audited(
    client: httpx.AsyncClient, account: Account
) -> None:
    assert_problem(await login(client, account.email, "wrong password"), 401)
    actions = await own_actions(client, account)
    assert actions[:3] == ["auth.login_failed", "auth.login", "auth.register"]


@pytest.mark.parametrize(
    "payload",
    [{"email": "a@example.com"}, {"email": "a@example.com", "password": ""}, {}],
    ids=["no-password", "empty-password", "empty"],
)
async def test_login_validation_errors(client: httpx.AsyncClient, payload: dict[str, Any]) -> None:
    error_fields(assert_problem(await client.post("/v1/auth/login", json=payload), 422))


# --- access token attacks -------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _claims(account: Account, **overrides: Any) -> dict[str, Any]:
    """Claims like those of the account's access token (its user and login)."""
    now = datetime.now(UTC)
    issued = jwt.decode(account.access_token, options={"verify_signature": False})
    claims: dict[str, Any] = {
        "sub": account.id,
        "sid": issued["sid"],
        "iat": now,
        "nbf": now,
        "exp": now + timedelta(minutes=5),
        "typ": "access",
    }
    claims.update(overrides)
    return claims


def _flip(char: str) -> str:
    return "A" if char != "A" else "B"


def tampered_payload(account: Account) -> str:
    header, payload, signature = account.access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "usr_" + "0" * 26
    return f"{header}.{_segment(claims)}.{signature}"


def flipped_payload_char(account: Account) -> str:
    header, payload, signature = account.access_token.split(".")
    middle = len(payload) // 2
    payload = payload[:middle] + _flip(payload[middle]) + payload[middle + 1 :]
    return f"{header}.{payload}.{signature}"


def flipped_signature_char(account: Account) -> str:
    header, payload, signature = account.access_token.split(".")
    signature = _flip(signature[0]) + signature[1:]
    return f"{header}.{payload}.{signature}"


def alg_none(account: Account) -> str:
    return jwt.encode(_claims(account), "", algorithm="none")


def alg_none_by_hand(account: Account) -> str:
    now = int(datetime.now(UTC).timestamp())
    claims = {**_claims(account), "iat": now, "nbf": now, "exp": now + 300}
    return f"{_segment({'alg': 'none', 'typ': 'JWT'})}.{_segment(claims)}."


def signature_stripped(account: Account) -> str:
    header, payload, _ = account.access_token.split(".")
    return f"{header}.{payload}."


def expired(account: Account) -> str:
    past = datetime.now(UTC) - timedelta(hours=1)
    claims = _claims(account, iat=past, nbf=past, exp=past + timedelta(minutes=15))
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


def other_secret(account: Account) -> str:
    return jwt.encode(_claims(account), "another-secret-" + "y" * 32, algorithm="HS256")


def not_an_access_token(account: Account) -> str:
    return jwt.encode(_claims(account, typ="refresh"), TEST_SECRET, algorithm="HS256")


def unknown_subject(account: Account) -> str:
    return jwt.encode(_claims(account, sub="usr_" + "0" * 26), TEST_SECRET, algorithm="HS256")


def unknown_login(account: Account) -> str:
    return jwt.encode(_claims(account, sid="lgn_" + "0" * 26), TEST_SECRET, algorithm="HS256")


def missing_login(account: Account) -> str:
    claims = _claims(account)
    del claims["sid"]
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


def missing_expiry(account: Account) -> str:
    claims = _claims(account)
    del claims["exp"]
    return jwt.encode(claims, TEST_SECRET, algorithm="HS256")


def hs384(account: Account) -> str:
    return jwt.encode(_claims(account), TEST_SECRET, algorithm="HS384")


def refresh_token_as_bearer(account: Account) -> str:
    return account.refresh_token


TOKEN_ATTACKS: list[Callable[[Account], str]] = [
    tampered_payload,
    flipped_payload_char,
    flipped_signature_char,
    alg_none,
    alg_none_by_hand,
    signature_stripped,
    expired,
    other_secret,
    not_an_access_token,
    unknown_subject,
    unknown_login,
    missing_login,
    missing_expiry,
    hs384,
    refresh_token_as_bearer,
    lambda _: "garbage",
    lambda _: "a.b.c",
    lambda _: "ahk_not-a-real-key",
    lambda _: "x" * 400,
]


async def test_a_forged_token_with_the_real_secret_is_accepted(
    client: httpx.AsyncClient, account: Account
) -> None:
    """The control for the attacks below: a well-formed token signed with the key works."""
    token = jwt.encode(_claims(account), TEST_SECRET, algorithm="HS256")
    assert await profile_status(client, {"Authorization": f"Bearer {token}"}) == 200


@pytest.mark.parametrize(
    "make_token",
    TOKEN_ATTACKS,
    ids=[
        "tampered-payload",
        "flipped-payload-char",
        "flipped-signature-char",
        "alg-none",
        "alg-none-by-hand",
        "signature-stripped",
        "expired",
        "other-secret",
        "typ-refresh",
        "unknown-subject",
        "unknown-login",
        "no-login",
        "no-exp",
        "hs384",
        "refresh-token-as-bearer",
        "garbage",
        "three-dots",
        "unknown-api-key",
        "long-garbage",
    ],
)
async def test_invalid_bearer_tokens_are_401(
    client: httpx.AsyncClient, account: Account, make_token: Callable[[Account], str]
) -> None:
    headers = {"Authorization": f"Bearer {make_token(account)}"}
    for method, path in (("GET", "/v1/user/profile"), ("GET", "/v1/user/api-keys")):
        response = await client.request(method, path, headers=headers)
        body = assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert account.email not in json.dumps(body)


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer"}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"X-API-Key": ""}],
    ids=["none", "empty-bearer", "basic", "empty-api-key"],
)
async def test_missing_credentials_are_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/v1/user/profile", headers=headers)
    assert_problem(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


# --- refresh rotation -----------------------------------------------------------------------


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


async def test_refresh_returns_a_new_pair(client: httpx.AsyncClient, account: Account) -> None:
    response = await refresh(client, account.refresh_token)
    assert response.status_code == 200
    tokens = response.json()
    assert set(tokens) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 15 * 60
    assert tokens["refresh_token"] != account.refresh_token
    assert tokens["access_token"] != account.access_token
    new_headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    profile = await client.get("/v1/user/profile", headers=new_headers)
    assert profile.json()["id"] == account.id
    # The rotated token keeps rotating.
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200


async def test_refresh_token_reuse_revokes_the_whole_family(
    client: httpx.AsyncClient, account: Account
) -> None:
    rotated = (await refresh(client, account.refresh_token)).json()["refresh_token"]
    body = assert_problem(await refresh(client, account.refresh_token), 401)
    assert "already used" in body["detail"]
    # The token issued by the rotation died with its family.
    assert_problem(await refresh(client, rotated), 401)
    assert "auth.refresh_reuse" in await own_actions(client, await relogin(client, account))


async def test_refresh_reuse_leaves_other_logins_alive(
    client: httpx.AsyncClient, account: Account
) -> None:
    other_login = (await login(client, account.email)).json()["refresh_token"]
    await refresh(client, account.refresh_token)
    assert_problem(await refresh(client, account.refresh_token), 401)
    assert (await refresh(client, other_login)).status_code == 200


async def test_concurrent_refresh_with_one_token_rotates_it_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    responses = await asyncio.gather(*(refresh(client, account.refresh_token) for _ in range(3)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 401, 401]
    for response in responses:
        if response.status_code != 200:
            assert_problem(response, 401)
    winner = next(r for r in responses if r.status_code == 200).json()["refresh_token"]
    # Presenting the token more than once is reuse: the whole family is revoked.
    assert_problem(await refresh(client, winner), 401)
    assert "auth.refresh_reuse" in await own_actions(client, await relogin(client, account))


async def test_expired_refresh_token_is_401(
    client: httpx.AsyncClient, app: FastAPI, account: Account
) -> None:
    async with app.state.database.transaction() as db:  # time travel: the login is 31 days old
        await db.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == account.id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    body = assert_problem(await refresh(client, account.refresh_token), 401)
    assert "expired" in body["detail"]


@pytest.mark.parametrize(
    "token", ["garbage", "x" * 64, "ahk_something"], ids=["garbage", "long", "api-key"]
)
async def test_refresh_with_unknown_token_is_401(client: httpx.AsyncClient, token: str) -> None:
    assert_problem(await refresh(client, token), 401)


async def test_refresh_with_an_access_token_is_401(
    client: httpx.AsyncClient, account: Account
) -> None:
    assert_problem(await refresh(client, account.access_token), 401)


async def test_refresh_without_any_token_is_401(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/v1/auth/refresh"), 401)
    assert_problem(await client.post("/v1/auth/refresh", json={}), 401)


async def test_refresh_rejects_unknown_fields(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.post(
        "/v1/auth/refresh", json={"refresh_token": account.refresh_token, "user_id": "usr_x"}
    )
    assert "user_id" in error_fields(assert_problem(response, 422))


# --- logout ---------------------------------------------------------------------------------


async def test_logout_revokes_the_refresh_token(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post("/v1/auth/logout", json={"refresh_token": account.refresh_token})
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await refresh(client, account.refresh_token), 401)
    assert "auth.logout" in await own_actions(client, await relogin(client, account))


async def test_logout_revokes_tokens_rotated_from_that_login(
    client: httpx.AsyncClient, account: Account
) -> None:
    rotated = (await refresh(client, account.refresh_token)).json()["refresh_token"]
    assert (
        await client.post("/v1/auth/logout", json={"refresh_token": rotated})
    ).status_code == 204
    assert_problem(await refresh(client, rotated), 401)


async def test_logout_keeps_other_logins(client: httpx.AsyncClient, account: Account) -> None:
    other = (await login(client, account.email)).json()["refresh_token"]
    await client.post("/v1/auth/logout", json={"refresh_token": account.refresh_token})
    assert (await refresh(client, other)).status_code == 200


async def test_logout_with_unknown_or_no_token_is_204(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/auth/logout", json={"refresh_token": "nope"})).status_code == 204
    assert (await client.post("/v1/auth/logout")).status_code == 204


# --- cookie mode ----------------------------------------------------------------------------


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client with its own cookie jar, like a browser tab."""
    async with asgi_client(app) as c:
        yield c


async def cookie_login(browser: httpx.AsyncClient, account: Account) -> httpx.Response:
    response = await login(browser, account.email, cookie=True)
    assert response.status_code == 200, response.text
    return response


async def test_cookie_login_sets_httponly_cookies(
    browser: httpx.AsyncClient, account: Account
) -> None:
    response = await cookie_login(browser, account)
    body = response.json()
    assert set(body) == {"token_type", "expires_in", "csrf_token"}
    assert body["token_type"] == "cookie"
    assert body["expires_in"] == 15 * 60
    cookies = set_cookies(response)
    assert set(cookies) == {"access_token", "refresh_token", "csrf_token"}
    for name in ("access_token", "refresh_token"):
        assert cookies[name]["httponly"] is True, name
    assert not cookies["csrf_token"]["httponly"]
    for morsel in cookies.values():
        assert morsel["samesite"].lower() == "lax"
        assert not morsel["secure"]  # cookie_secure=False in tests (plain-http localhost)
    assert cookies["access_token"]["path"] == "/"
    assert cookies["access_token"]["max-age"] == "900"
    assert cookies["refresh_token"]["path"] == "/v1/auth"
    assert cookies["csrf_token"].value == body["csrf_token"]
    assert browser.cookies["csrf_token"] == body["csrf_token"]


async def test_cookie_login_marks_cookies_secure_by_default(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        custom_app(database_url, tmp_path, cookie_secure=True) as application,
        asgi_client(application) as c,
    ):
        email = new_email()
        await register(c, email)
        cookies = set_cookies(await login(c, email, cookie=True))
        assert all(cookies[name]["secure"] for name in ("access_token", "refresh_token"))
        assert cookies["csrf_token"]["secure"]


async def test_cookie_alone_authenticates_reads(
    browser: httpx.AsyncClient, account: Account
) -> None:
    await cookie_login(browser, account)
    response = await browser.get("/v1/user/profile")
    assert response.status_code == 200
    assert response.json()["id"] == account.id


async def test_cookie_write_without_csrf_header_is_403(
    browser: httpx.AsyncClient, account: Account
) -> None:
    await cookie_login(browser, account)
    response = await browser.patch("/v1/user/profile", json={"username": "csrf-victim"})
    body = assert_problem(response, 403)
    assert "X-CSRF-Token" in body["detail"]
    assert (await browser.get("/v1/user/profile")).json()["username"] is None


async def test_cookie_write_with_wrong_csrf_header_is_403(
    browser: httpx.AsyncClient, account: Account
) -> None:
    await cookie_login(browser, account)
    response = await browser.patch(
        "/v1/user/profile", json={"username": "csrf-victim"}, headers={"X-CSRF-Token": "wrong"}
    )
    assert_problem(response, 403)
    assert (await browser.get("/v1/user/profile")).json()["username"] is None


async def test_cookie_write_with_csrf_header_succeeds(
    browser: httpx.AsyncClient, account: Account
) -> None:
    csrf = (await cookie_login(browser, account)).json()["csrf_token"]
    response = await browser.patch(
        "/v1/user/profile", json={"username": "cookie_user"}, headers={"X-CSRF-Token": csrf}
    )
    assert response.status_code == 200
    assert response.json()["username"] == "cookie_user"


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/v1/user/api-keys", {"name": "csrf"}),
        ("POST", "/v1/user/api-key/reset", None),
        ("DELETE", "/v1/user/api-keys/key_01JAAAAAAAAAAAAAAAAAAAAAAA", None),
        ("DELETE", "/v1/user", None),
    ],
    ids=["create-key", "reset-keys", "delete-key", "delete-account"],
)
async def test_every_cookie_write_needs_csrf(
    browser: httpx.AsyncClient,
    account: Account,
    method: str,
    path: str,
    payload: dict[str, Any] | None,
) -> None:
    await cookie_login(browser, account)
    response = await browser.request(method, path, json=payload)
    assert_problem(response, 403)
    # Nothing happened: the account is alive and has no keys.
    profile = await browser.get("/v1/user/profile")
    assert profile.status_code == 200
    assert profile.json()["api_key_prefixes"] == []


async def test_cookie_delete_account_with_csrf_clears_cookies(
    browser: httpx.AsyncClient, account: Account
) -> None:
    csrf = (await cookie_login(browser, account)).json()["csrf_token"]
    response = await browser.delete("/v1/user", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    assert set(set_cookies(response)) == {"access_token", "refresh_token", "csrf_token"}
    assert not browser.cookies


async def test_invalid_access_cookie_is_401(browser: httpx.AsyncClient) -> None:
    browser.cookies.set("access_token", "not-a-jwt")
    assert_problem(await browser.get("/v1/user/profile"), 401)


async def test_cookie_refresh_needs_csrf_and_rotates_cookies(
    browser: httpx.AsyncClient, account: Account
) -> None:
    first = await cookie_login(browser, account)
    old = set_cookies(first)
    csrf = first.json()["csrf_token"]

    assert_problem(await browser.post("/v1/auth/refresh"), 403)
    assert_problem(await browser.post("/v1/auth/refresh", headers={"X-CSRF-Token": "no"}), 403)

    response = await browser.post("/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "cookie"
    new = set_cookies(response)
    assert set(new) == {"access_token", "refresh_token", "csrf_token"}
    assert new["refresh_token"].value != old["refresh_token"].value
    assert new["access_token"].value != old["access_token"].value
    assert new["csrf_token"].value == body["csrf_token"]
    assert new["refresh_token"]["httponly"] is True
    # The browser now uses the new cookies, and the new CSRF token guards writes.
    patched = await browser.patch(
        "/v1/user/profile",
        json={"username": "rotated"},
        headers={"X-CSRF-Token": body["csrf_token"]},
    )
    assert patched.status_code == 200
    # The old refresh cookie is spent: presenting it again is reuse.
    assert_problem(await refresh(browser, old["refresh_token"].value), 401)


async def test_cookie_logout_clears_cookies_and_revokes(
    browser: httpx.AsyncClient, account: Account
) -> None:
    response = await cookie_login(browser, account)
    csrf = response.json()["csrf_token"]
    refresh_cookie = set_cookies(response)["refresh_token"].value

    assert_problem(await browser.post("/v1/auth/logout"), 403)
    logout = await browser.post("/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert logout.status_code == 204
    cleared = set_cookies(logout)
    assert set(cleared) == {"access_token", "refresh_token", "csrf_token"}
    assert all(m["max-age"] == "0" for m in cleared.values())
    assert not browser.cookies
    assert_problem(await browser.get("/v1/user/profile"), 401)
    assert_problem(await refresh(browser, refresh_cookie), 401)


# --- login rate limits ----------------------------------------------------------------------


def assert_rate_limited(response: httpx.Response) -> None:
    """A 429 with `Retry-After`, whose `RateLimit-*` headers name the spent limit."""
    assert_problem(response, 429)
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert 1 <= int(retry_after) <= 60
    assert response.headers["RateLimit-Remaining"] == "0"
    assert int(response.headers["RateLimit-Reset"]) <= 60


async def test_login_is_limited_per_account(database_url: str, tmp_path: Path) -> None:
    async with (
        custom_app(
            database_url, tmp_path, login_limit_account="3/minute", login_limit_ip="100/minute"
        ) as application,
        asgi_client(application) as c,
        asgi_client(application, client_ip="10.0.0.2") as elsewhere,
    ):
        victim, bystander = new_email(), new_email()
        await register(c, victim)
        await register(c, bystander)
        for _ in range(3):
            assert_problem(await login(c, victim, "wrong password"), 401)
        # Locked for this account, even with the right password and from another address.
        locked = await login(c, victim)
        assert_rate_limited(locked)
        assert locked.headers["RateLimit-Policy"] == "3;w=60"
        assert_rate_limited(await login(elsewhere, victim.upper()))
        # Another account from the same address is not affected.
        assert (await login(c, bystander)).status_code == 200


async def test_successful_logins_do_not_count_against_the_account(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        custom_app(
            database_url, tmp_path, login_limit_account="2/minute", login_limit_ip="100/minute"
        ) as application,
        asgi_client(application) as c,
    ):
        email = new_email()
        await register(c, email)
        for _ in range(4):
            assert (await login(c, email)).status_code == 200


async def test_login_is_limited_per_ip(database_url: str, tmp_path: Path) -> None:
    async with (
        custom_app(
            database_url, tmp_path, login_limit_account="100/minute", login_limit_ip="5/minute"
        ) as application,
        asgi_client(application) as c,
        asgi_client(application, client_ip="10.0.0.2") as elsewhere,
    ):
        email = new_email()
        await register(c, email)
        assert (await login(c, email)).status_code == 200
        for _ in range(4):
            assert_problem(await login(c, new_email(), "guessing"), 401)
        assert_rate_limited(await login(c, email))
        # The same account from another address still gets in.
        assert (await login(elsewhere, email)).status_code == 200


async def test_registration_is_limited_per_ip(database_url: str, tmp_path: Path) -> None:
    async with (
        custom_app(database_url, tmp_path, login_limit_ip="3/minute") as application,
        asgi_client(application) as c,
        asgi_client(application, client_ip="10.0.0.2") as elsewhere,
    ):
        for _ in range(3):
            assert (await register(c, new_email())).status_code == 201
        refused_before = await _refusals(c)
        assert_rate_limited(await register(c, new_email()))
        assert await _refusals(c) == refused_before + 1  # counted in rate_limited_total
        assert (await register(elsewhere, new_email())).status_code == 201


async def _refusals(client: httpx.AsyncClient) -> float:
    text = (await client.get("/metrics")).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "rate_limited_total" and sample.labels == {"group": "auth"}
    )


async def test_default_account_limit_is_ten_failures(
    client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    account = await make_account()
    for _ in range(10):
        assert_problem(await login(client, account.email, "wrong password"), 401)
    assert_rate_limited(await login(client, account.email))
