"""`/v1/user/*` and `/v1/admin/audit` through the HTTP API: profile, API keys, idempotent
creation, account deletion and the audit log."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from agenthub.db.models.auth import ApiKey
from conftest import AccountFactory
from support import (
    PASSWORD,
    Account,
    assert_iso_utc,
    assert_problem,
    error_fields,
    list_page,
    profile_status,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_key(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/user/api-keys", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def list_keys(client: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    response = await client.get("/v1/user/api-keys", headers=account.headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def audit(
    client: httpx.AsyncClient, account: Account, path: str = "/v1/user/audit", **params: Any
) -> dict[str, Any]:
    return await list_page(client, account, path, **params)


def actions(page: dict[str, Any]) -> list[str]:
    return [event["action"] for event in page["data"]]


# --- profile --------------------------------------------------------------------------------


async def test_profile_of_a_new_account(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get("/v1/user/profile", headers=account.headers)
    assert response.status_code == 200
    profile = response.json()
    assert set(profile) == {
        "id",
        "email",
        "username",
        "is_admin",
        "created_at",
        "preferences",
        "api_key_prefixes",
        "usage",
    }
    assert profile["id"] == account.id
    assert profile["email"] == account.email
    assert profile["username"] is None
    assert profile["is_admin"] is False
    assert profile["preferences"] == {}
    assert profile["api_key_prefixes"] == []
    assert profile["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert_iso_utc(profile["created_at"])
    assert "password" not in response.text


async def test_profile_of_an_admin(client: httpx.AsyncClient, admin: Account) -> None:
    response = await client.get("/v1/user/profile", headers=admin.headers)
    assert response.json()["is_admin"] is True


async def test_profile_needs_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/user/profile"), 401)
    assert_problem(await client.patch("/v1/user/profile", json={"username": "x"}), 401)


async def test_patch_profile_changes_username_and_preferences(
    client: httpx.AsyncClient, account: Account
) -> None:
    prefs = {"theme": "dark", "language": "en", "shortcuts": {"send": "ctrl+enter"}}
    response = await client.patch(
        "/v1/user/profile",
        json={"username": "grace_h", "preferences": prefs},
        headers=account.headers,
    )
    assert response.status_code == 200
    assert response.json()["username"] == "grace_h"
    assert response.json()["preferences"] == prefs
    stored = (await client.get("/v1/user/profile", headers=account.headers)).json()
    assert stored["username"] == "grace_h"
    assert stored["preferences"] == prefs


async def test_patch_profile_replaces_preferences_and_keeps_username(
    client: httpx.AsyncClient, account: Account
) -> None:
    await client.patch(
        "/v1/user/profile",
        json={"username": "keeper", "preferences": {"theme": "dark", "language": "en"}},
        headers=account.headers,
    )
    response = await client.patch(
        "/v1/user/profile", json={"preferences": {"theme": "light"}}, headers=account.headers
    )
    assert response.status_code == 200
    assert response.json()["preferences"] == {"theme": "light"}
    assert response.json()["username"] == "keeper"


async def test_patch_profile_username_only_keeps_preferences(
    client: httpx.AsyncClient, account: Account
) -> None:
    await client.patch(
        "/v1/user/profile", json={"preferences": {"theme": "dark"}}, headers=account.headers
    )
    response = await client.patch(
        "/v1/user/profile", json={"username": "renamed"}, headers=account.headers
    )
    assert response.json()["preferences"] == {"theme": "dark"}
    cleared = await client.patch(
        "/v1/user/profile", json={"username": None}, headers=account.headers
    )
    assert cleared.json()["username"] is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "has spaces"}, "username"),
        ({"username": ""}, "username"),
        ({"username": "x" * 65}, "username"),
        ({"username": "emoji-\u2603"}, "username"),
        ({"preferences": ["not", "an", "object"]}, "preferences"),
        ({"preferences": "dark"}, "preferences"),
        ({"email": "new@example.com"}, "email"),
        ({"is_admin": True}, "is_admin"),
    ],
    ids=[
        "spaces",
        "empty",
        "too-long",
        "non-ascii",
        "prefs-list",
        "prefs-string",
        "email",
        "is-admin",
    ],
)
async def test_patch_profile_validation_errors(
    client: httpx.AsyncClient, account: Account, payload: dict[str, Any], field: str
) -> None:
    response = await client.patch("/v1/user/profile", json=payload, headers=account.headers)
    assert field in error_fields(assert_problem(response, 422))
    profile = (await client.get("/v1/user/profile", headers=account.headers)).json()
    assert profile["username"] is None and profile["is_admin"] is False
    assert profile["email"] == account.email


async def test_patch_profile_rejects_oversized_preferences(
    client: httpx.AsyncClient, account: Account
) -> None:
    payload = {"preferences": {"blob": "x" * 70_000}}
    response = await client.patch("/v1/user/profile", json=payload, headers=account.headers)
    assert "preferences" in error_fields(assert_problem(response, 422))


async def test_patch_profile_rejects_non_finite_numbers(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.patch(
        "/v1/user/profile",
        content=b'{"preferences": {"x": NaN}}',
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert "preferences" in error_fields(assert_problem(response, 422))
    profile = (await client.get("/v1/user/profile", headers=account.headers)).json()
    assert profile["preferences"] == {}


# --- API keys -------------------------------------------------------------------------------


async def test_create_api_key_returns_the_secret_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = await create_key(client, account, name="laptop")
    assert set(created) == {
        "id",
        "name",
        "prefix",
        "created_at",
        "expires_at",
        "last_used_at",
        "key",
    }
    assert created["id"].startswith("key_")
    assert created["name"] == "laptop"
    assert created["key"].startswith("ahk_") and len(created["key"]) > 30
    assert created["key"].startswith(created["prefix"])
    assert len(created["prefix"]) < len(created["key"])
    assert created["expires_at"] is None and created["last_used_at"] is None
    assert_iso_utc(created["created_at"])

    response = await client.get("/v1/user/api-keys", headers=account.headers)
    page = response.json()
    assert page["has_more"] is False and page["next_cursor"] is None
    [listed] = page["data"]
    assert listed["id"] == created["id"]
    assert listed["name"] == "laptop"
    assert listed["prefix"] == created["prefix"]
    assert "key" not in listed
    assert created["key"] not in response.text


async def test_create_api_key_with_defaults_and_expiry(
    client: httpx.AsyncClient, account: Account
) -> None:
    default = await create_key(client, account)
    assert default["name"] == "default"
    expiring = await create_key(client, account, name="ci", expires_in_days=30)
    expires = assert_iso_utc(expiring["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)
    # Newest first.
    assert [k["id"] for k in await list_keys(client, account)] == [expiring["id"], default["id"]]


@pytest.mark.parametrize(
    "payload",
    [
        {"expires_in_days": 0},
        {"expires_in_days": -1},
        {"expires_in_days": 100_000},
        {"name": ""},
        {"name": "x" * 101},
        {"name": "ok", "scopes": ["admin"]},
    ],
    ids=["expiry-zero", "expiry-past", "expiry-huge", "empty-name", "long-name", "unknown-field"],
)
async def test_create_api_key_validation_errors(
    client: httpx.AsyncClient, account: Account, payload: dict[str, Any]
) -> None:
    response = await client.post("/v1/user/api-keys", json=payload, headers=account.headers)
    error_fields(assert_problem(response, 422))
    assert await list_keys(client, account) == []


async def test_api_key_authenticates_as_bearer_and_header(
    client: httpx.AsyncClient, account: Account
) -> None:
    key = (await create_key(client, account))["key"]
    for headers in (bearer(key), {"X-API-Key": key}):
        response = await client.get("/v1/user/profile", headers=headers)
        assert response.status_code == 200
        assert response.json()["id"] == account.id
    # An API key may also write.
    response = await client.patch(
        "/v1/user/profile", json={"username": "via_key"}, headers={"X-API-Key": key}
    )
    assert response.json()["username"] == "via_key"


async def test_api_key_use_is_recorded(client: httpx.AsyncClient, account: Account) -> None:
    key = (await create_key(client, account))["key"]
    assert await profile_status(client, {"X-API-Key": key}) == 200
    [listed] = await list_keys(client, account)
    used = assert_iso_utc(listed["last_used_at"])
    assert abs(datetime.now(UTC) - used) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "mangle",
    ["flip-last", "truncate", "prefix-only", "other-prefix"],
)
async def test_wrong_api_keys_are_401(
    client: httpx.AsyncClient, account: Account, mangle: str
) -> None:
    created = await create_key(client, account)
    key: str = created["key"]
    wrong = {
        "flip-last": key[:-1] + ("A" if key[-1] != "A" else "B"),
        "truncate": key[:-4],
        "prefix-only": created["prefix"],
        "other-prefix": "xyz_" + key[4:],
    }[mangle]
    for headers in (bearer(wrong), {"X-API-Key": wrong}):
        assert_problem(await client.get("/v1/user/profile", headers=headers), 401)


async def test_profile_lists_api_key_prefixes(client: httpx.AsyncClient, account: Account) -> None:
    first = await create_key(client, account, name="one")
    second = await create_key(client, account, name="two")
    profile = (await client.get("/v1/user/profile", headers=account.headers)).json()
    assert sorted(profile["api_key_prefixes"]) == sorted([first["prefix"], second["prefix"]])
    assert first["key"] not in str(profile) and second["key"] not in str(profile)


async def test_delete_api_key_revokes_it(client: httpx.AsyncClient, account: Account) -> None:
    doomed = await create_key(client, account, name="doomed")
    kept = await create_key(client, account, name="kept")
    response = await client.delete(f"/v1/user/api-keys/{doomed['id']}", headers=account.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get("/v1/user/profile", headers=bearer(doomed["key"])), 401)
    assert_problem(await client.get("/v1/user/profile", headers={"X-API-Key": doomed["key"]}), 401)
    assert await profile_status(client, {"X-API-Key": kept["key"]}) == 200
    assert [k["id"] for k in await list_keys(client, account)] == [kept["id"]]
    again = await client.delete(f"/v1/user/api-keys/{doomed['id']}", headers=account.headers)
    assert_problem(again, 404)


async def test_delete_unknown_api_key_is_404(client: httpx.AsyncClient, account: Account) -> None:
    for key_id in ("key_01JAAAAAAAAAAAAAAAAAAAAAAA", "nonsense"):
        response = await client.delete(f"/v1/user/api-keys/{key_id}", headers=account.headers)
        assert_problem(response, 404)


async def test_another_users_api_key_is_404(
    client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    owner, intruder = await make_account(), await make_account()
    key = await create_key(client, owner)
    response = await client.delete(f"/v1/user/api-keys/{key['id']}", headers=intruder.headers)
    body = assert_problem(response, 404)
    assert owner.email not in str(body)
    assert await profile_status(client, {"X-API-Key": key["key"]}) == 200
    assert await list_keys(client, intruder) == []
    assert [k["id"] for k in await list_keys(client, owner)] == [key["id"]]


async def test_reset_api_keys_revokes_all_and_issues_one(
    client: httpx.AsyncClient, account: Account
) -> None:
    old = [await create_key(client, account, name=f"k{i}") for i in range(2)]
    response = await client.post("/v1/user/api-key/reset", headers=account.headers)
    assert response.status_code == 201
    new = response.json()
    assert new["key"].startswith("ahk_")
    assert new["name"] == "default"
    for key in old:
        assert_problem(await client.get("/v1/user/profile", headers=bearer(key["key"])), 401)
        assert_problem(await client.get("/v1/user/profile", headers={"X-API-Key": key["key"]}), 401)
    assert await profile_status(client, bearer(new["key"])) == 200
    listed = await list_keys(client, account)
    assert [k["id"] for k in listed] == [new["id"]]
    profile = (await client.get("/v1/user/profile", headers=account.headers)).json()
    assert profile["api_key_prefixes"] == [new["prefix"]]


async def test_reset_without_existing_keys_issues_one(
    client: httpx.AsyncClient, account: Account
) -> None:
    response = await client.post("/v1/user/api-key/reset", headers=account.headers)
    assert response.status_code == 201
    assert await profile_status(client, {"X-API-Key": response.json()["key"]}) == 200


async def test_expired_api_key_is_401(
    client: httpx.AsyncClient, app: FastAPI, account: Account
) -> None:
    key = await create_key(client, account, expires_in_days=1)
    assert await profile_status(client, {"X-API-Key": key["key"]}) == 200
    async with app.state.database.transaction() as db:  # time travel: the key is a day older
        await db.execute(
            update(ApiKey)
            .where(ApiKey.id == key["id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert_problem(await client.get("/v1/user/profile", headers={"X-API-Key": key["key"]}), 401)
    assert_problem(await client.get("/v1/user/profile", headers=bearer(key["key"])), 401)


async def test_api_key_routes_need_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/user/api-keys"), 401)
    assert_problem(await client.post("/v1/user/api-keys", json={}), 401)
    assert_problem(await client.delete("/v1/user/api-keys/key_x"), 401)
    assert_problem(await client.post("/v1/user/api-key/reset"), 401)


# --- Idempotency-Key ------------------------------------------------------------------------


async def test_idempotent_api_key_creation_replays_the_first_response(
    client: httpx.AsyncClient, account: Account
) -> None:
    headers = {**account.headers, "Idempotency-Key": "create-key-1"}
    first = await client.post("/v1/user/api-keys", json={"name": "ci"}, headers=headers)
    second = await client.post("/v1/user/api-keys", json={"name": "ci"}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert [k["id"] for k in await list_keys(client, account)] == [first.json()["id"]]


async def test_idempotency_key_with_another_body_is_422(
    client: httpx.AsyncClient, account: Account
) -> None:
    headers = {**account.headers, "Idempotency-Key": "create-key-2"}
    created = await client.post("/v1/user/api-keys", json={"name": "one"}, headers=headers)
    assert created.status_code == 201
    reused = await client.post("/v1/user/api-keys", json={"name": "two"}, headers=headers)
    assert "Idempotency-Key" in error_fields(assert_problem(reused, 422))
    assert [k["name"] for k in await list_keys(client, account)] == ["one"]


async def test_concurrent_idempotent_requests_create_one_key(
    client: httpx.AsyncClient, account: Account
) -> None:
    headers = {**account.headers, "Idempotency-Key": "create-key-race"}
    responses = await asyncio.gather(
        *(
            client.post("/v1/user/api-keys", json={"name": "race"}, headers=headers)
            for _ in range(3)
        )
    )
    created = [r for r in responses if r.status_code == 201]
    assert created
    for response in responses:
        if response.status_code != 201:
            assert_problem(response, 409)  # "already in progress": safe to retry
    assert len({r.json()["id"] for r in created}) == 1
    assert [k["id"] for k in await list_keys(client, account)] == [created[0].json()["id"]]


async def test_requests_without_idempotency_key_create_each_time(
    client: httpx.AsyncClient, account: Account
) -> None:
    await create_key(client, account, name="same")
    await create_key(client, account, name="same")
    assert len(await list_keys(client, account)) == 2


async def test_idempotency_keys_are_per_user(
    client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    alice, bob = await make_account(), await make_account()
    body = {"name": "shared"}
    a = await client.post(
        "/v1/user/api-keys", json=body, headers={**alice.headers, "Idempotency-Key": "same"}
    )
    b = await client.post(
        "/v1/user/api-keys", json=body, headers={**bob.headers, "Idempotency-Key": "same"}
    )
    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b.headers
    assert b.json()["id"] != a.json()["id"] and b.json()["key"] != a.json()["key"]
    assert [k["id"] for k in await list_keys(client, bob)] == [b.json()["id"]]


async def test_idempotent_reset_replays(client: httpx.AsyncClient, account: Account) -> None:
    headers = {**account.headers, "Idempotency-Key": "reset-1"}
    first = await client.post("/v1/user/api-key/reset", headers=headers)
    second = await client.post("/v1/user/api-key/reset", headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await profile_status(client, {"X-API-Key": first.json()["key"]}) == 200


async def test_blank_idempotency_key_is_422(client: httpx.AsyncClient, account: Account) -> None:
    headers = {**account.headers, "Idempotency-Key": ""}
    response = await client.post("/v1/user/api-keys", json={}, headers=headers)
    error_fields(assert_problem(response, 422))


# --- account deletion -----------------------------------------------------------------------


async def test_delete_account_cuts_every_credential(
    client: httpx.AsyncClient, account: Account
) -> None:
    key = (await create_key(client, account))["key"]
    response = await client.delete("/v1/user", headers=account.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get("/v1/user/profile", headers=account.headers), 401)
    assert_problem(await client.get("/v1/user/profile", headers=bearer(key)), 401)
    assert_problem(await client.get("/v1/user/profile", headers={"X-API-Key": key}), 401)
    refresh = await client.post("/v1/auth/refresh", json={"refresh_token": account.refresh_token})
    assert_problem(refresh, 401)
    login = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": account.password}
    )
    assert_problem(login, 401)
    assert_problem(await client.delete("/v1/user", headers=account.headers), 401)


async def test_deleted_email_can_register_again(
    client: httpx.AsyncClient, account: Account
) -> None:
    assert (await client.delete("/v1/user", headers=account.headers)).status_code == 204
    again = await client.post(
        "/v1/auth/register", json={"email": account.email, "password": "a new password"}
    )
    assert again.status_code == 201
    assert again.json()["id"] != account.id
    login = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": "a new password"}
    )
    assert login.status_code == 200
    profile = await client.get("/v1/user/profile", headers=bearer(login.json()["access_token"]))
    assert profile.json()["api_key_prefixes"] == []
    # The old password does not open the new account.
    old = await client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert_problem(old, 401)


async def test_delete_account_leaves_other_users_alone(
    client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    leaving, staying = await make_account(), await make_account()
    key = (await create_key(client, staying))["key"]
    assert (await client.delete("/v1/user", headers=leaving.headers)).status_code == 204
    assert await profile_status(client, staying.headers) == 200
    assert await profile_status(client, {"X-API-Key": key}) == 200


async def test_delete_account_needs_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.delete("/v1/user"), 401)


# --- audit ----------------------------------------------------------------------------------


async def test_own_audit_shows_security_events_newest_first(
    client: httpx.AsyncClient, account: Account
) -> None:
    failed = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": "wrong password"}
    )
    assert_problem(failed, 401)
    key = await create_key(client, account, name="temp")
    await client.delete(f"/v1/user/api-keys/{key['id']}", headers=account.headers)
    reset = await client.post("/v1/user/api-key/reset", headers=account.headers)

    page = await audit(client, account)
    assert actions(page) == [
        "api_key.reset",
        "api_key.revoked",
        "api_key.created",
        "auth.login_failed",
        "auth.login",
        "auth.register",
    ]
    assert page["has_more"] is False and page["next_cursor"] is None
    events = page["data"]
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    for event in events:
        assert set(event) == {
            "id",
            "user_id",
            "actor_id",
            "action",
            "ip",
            "user_agent",
            "details",
            "created_at",
        }
        assert event["id"].startswith("aud_")
        assert event["user_id"] == account.id
        assert event["ip"] == "127.0.0.1"
        assert_iso_utc(event["created_at"])
    assert events[0]["details"]["key_id"] == reset.json()["id"]
    assert events[1]["details"]["key_id"] == key["id"]
    assert events[2]["details"]["key_id"] == key["id"]
    # No secret ever lands in the audit log.
    assert key["key"] not in str(events) and reset.json()["key"] not in str(events)
    assert PASSWORD not in str(events) and "wrong password" not in str(events)


async def test_own_audit_filters_by_action(client: httpx.AsyncClient, account: Account) -> None:
    await create_key(client, account)
    page = await audit(client, account, action="api_key.created")
    assert actions(page) == ["api_key.created"]
    assert (await audit(client, account, action="no.such.action"))["data"] == []


async def test_own_audit_pages_with_a_cursor(client: httpx.AsyncClient, account: Account) -> None:
    for i in range(3):
        await create_key(client, account, name=f"k{i}")
    everything = (await audit(client, account))["data"]
    assert len(everything) == 5

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    for expected_more in (True, True, False):
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["after"] = cursor
        page = await audit(client, account, **params)
        assert page["has_more"] is expected_more
        assert len(page["data"]) == (2 if expected_more else 1)
        if expected_more:
            assert page["next_cursor"] == page["data"][-1]["id"]
        else:
            assert page["next_cursor"] is None
        seen.extend(page["data"])
        cursor = page["next_cursor"]
    assert seen == everything


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 201},
        {"limit": -5},
        {"limit": "many"},
        {"after": "garbage"},
        {"after": "usr_01JAAAAAAAAAAAAAAAAAAAAAAA"},
        {"before": "not-an-id"},
        {"after": "aud_01JAAAAAAAAAAAAAAAAAAAAAAA", "before": "aud_01JAAAAAAAAAAAAAAAAAAAAAAA"},
        {"order": "sideways"},
    ],
    ids=[
        "limit-0",
        "limit-201",
        "limit-negative",
        "limit-text",
        "garbage-cursor",
        "wrong-type-cursor",
        "garbage-before",
        "both-cursors",
        "bad-order",
    ],
)
async def test_audit_rejects_bad_paging(
    client: httpx.AsyncClient, account: Account, admin: Account, params: dict[str, Any]
) -> None:
    for who, path in ((account, "/v1/user/audit"), (admin, "/v1/admin/audit")):
        response = await client.get(path, params=params, headers=who.headers)
        error_fields(assert_problem(response, 422))


async def test_audit_accepts_the_maximum_limit(client: httpx.AsyncClient, account: Account) -> None:
    assert len((await audit(client, account, limit=200))["data"]) == 2


async def test_users_never_see_each_others_events(
    client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    alice, bob = await make_account(), await make_account()
    alice_key = await create_key(client, alice)
    bob_events = (await audit(client, bob))["data"]
    assert {e["user_id"] for e in bob_events} == {bob.id}
    assert [e["action"] for e in bob_events] == ["auth.login", "auth.register"]
    assert alice_key["id"] not in str(bob_events)
    # Paging with a cursor from someone else's log reveals nothing of theirs either.
    alice_first = (await audit(client, alice))["data"][-1]["id"]
    leaked = await audit(client, bob, after=alice_first)
    assert {e["user_id"] for e in leaked["data"]} <= {bob.id}


async def test_own_audit_needs_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/user/audit"), 401)


async def test_admin_audit_shows_everyone(
    client: httpx.AsyncClient, admin: Account, make_account: AccountFactory
) -> None:
    alice, bob = await make_account(), await make_account()
    unknown = await client.post(
        "/v1/auth/login", json={"email": "nobody@example.com", "password": "guess"}
    )
    assert_problem(unknown, 401)
    page = await audit(client, admin, "/v1/admin/audit")
    users = {e["user_id"] for e in page["data"]}
    assert {alice.id, bob.id, admin.id} <= users
    assert None in users  # the failed login for an unknown address
    ids = [e["id"] for e in page["data"]]
    assert ids == sorted(ids, reverse=True)


async def test_admin_audit_filters_by_user_and_action(
    client: httpx.AsyncClient, admin: Account, make_account: AccountFactory
) -> None:
    alice, bob = await make_account(), await make_account()
    await create_key(client, bob)
    only_alice = await audit(client, admin, "/v1/admin/audit", user_id=alice.id)
    assert actions(only_alice) == ["auth.login", "auth.register"]
    assert {e["user_id"] for e in only_alice["data"]} == {alice.id}
    created = await audit(client, admin, "/v1/admin/audit", action="api_key.created")
    assert [e["user_id"] for e in created["data"]] == [bob.id]
    both = await audit(client, admin, "/v1/admin/audit", user_id=alice.id, action="api_key.created")
    assert both["data"] == []


async def test_admin_audit_pages(
    client: httpx.AsyncClient, admin: Account, make_account: AccountFactory
) -> None:
    await make_account()
    everything = (await audit(client, admin, "/v1/admin/audit"))["data"]
    first = await audit(client, admin, "/v1/admin/audit", limit=1)
    assert first["has_more"] is True
    rest = await audit(client, admin, "/v1/admin/audit", after=first["next_cursor"])
    assert first["data"] + rest["data"] == everything


async def test_admin_sees_account_deletion(
    client: httpx.AsyncClient, admin: Account, account: Account
) -> None:
    assert (await client.delete("/v1/user", headers=account.headers)).status_code == 204
    page = await audit(client, admin, "/v1/admin/audit", user_id=account.id)
    assert actions(page)[0] == "account.deleted"
    assert page["data"][0]["actor_id"] == account.id


async def test_admin_audit_is_forbidden_to_users(
    client: httpx.AsyncClient, account: Account
) -> None:
    body = assert_problem(await client.get("/v1/admin/audit", headers=account.headers), 403)
    assert body["title"] == "Forbidden"
    key = (await create_key(client, account))["key"]
    assert_problem(await client.get("/v1/admin/audit", headers={"X-API-Key": key}), 403)


async def test_admin_audit_needs_authentication(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/v1/admin/audit"), 401)
    assert_problem(await client.get("/v1/admin/audit", headers=bearer("garbage")), 401)


async def test_admin_api_key_reaches_admin_audit(client: httpx.AsyncClient, admin: Account) -> None:
    key = (await create_key(client, admin))["key"]
    response = await client.get("/v1/admin/audit", headers={"X-API-Key": key})
    assert response.status_code == 200
    assert "api_key.created" in actions(response.json())
