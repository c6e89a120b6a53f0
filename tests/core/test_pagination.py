"""Keyset pagination (`limit`, `after`, `before`, `order`) through a real list route."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from agenthub.core.ids import new_id
from conftest import AccountFactory
from support import Account, ids, list_page

EVENTS = 25
AUDIT = "/v1/user/audit"


@pytest.fixture
async def busy(client: httpx.AsyncClient, make_account: AccountFactory) -> Account:
    """An account with exactly 25 audit events (register, login, 23 API keys created)."""
    account = await make_account()
    for n in range(EVENTS - 2):
        created = await client.post(
            "/v1/user/api-keys", json={"name": f"key {n}"}, headers=account.headers
        )
        assert created.status_code == 201, created.text
    # A second user's events must never show up in the first user's pages.
    await make_account()
    return account


async def _everything(client: httpx.AsyncClient, account: Account, order: str) -> list[str]:
    page = await list_page(client, account, AUDIT, limit=200, order=order)
    assert page["has_more"] is False
    assert page["next_cursor"] is None
    return ids(page)


async def test_one_page_holds_every_event_newest_first(
    client: httpx.AsyncClient, busy: Account
) -> None:
    page = await list_page(client, busy, AUDIT, limit=200)
    events = page["data"]
    assert len(events) == EVENTS
    assert {e["user_id"] for e in events} == {busy.id}
    event_ids = ids(page)
    assert event_ids == sorted(event_ids, reverse=True)
    actions = sorted(e["action"] for e in events)
    assert actions == sorted(["auth.register", "auth.login"] + ["api_key.created"] * (EVENTS - 2))


async def test_default_page_size(client: httpx.AsyncClient, busy: Account) -> None:
    response = await client.get(AUDIT, headers=busy.headers)
    page = response.json()
    assert len(page["data"]) == EVENTS  # under the default limit of 50
    assert page["has_more"] is False


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_after_walks_every_event_exactly_once_in_order(
    client: httpx.AsyncClient, busy: Account, order: str
) -> None:
    everything = await _everything(client, busy, order)
    assert everything == sorted(everything, reverse=order == "desc")

    seen: list[str] = []
    sizes: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 10, "order": order}
        if cursor is not None:
            params["after"] = cursor
        page = await list_page(client, busy, AUDIT, **params)
        seen += ids(page)
        sizes.append(len(page["data"]))
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        assert page["next_cursor"] == seen[-1]
        cursor = page["next_cursor"]
        assert len(sizes) < 10, "pagination does not terminate"

    assert sizes == [10, 10, 5]
    assert seen == everything


async def test_exact_multiple_of_limit_ends_without_empty_page(
    client: httpx.AsyncClient, busy: Account
) -> None:
    everything = await _everything(client, busy, "desc")
    first = await list_page(client, busy, AUDIT, limit=EVENTS - 1)
    assert first["has_more"] is True
    last = await list_page(client, busy, AUDIT, limit=1, after=first["next_cursor"])
    assert ids(last) == everything[-1:]
    assert last["has_more"] is False
    assert last["next_cursor"] is None
    whole = await list_page(client, busy, AUDIT, limit=EVENTS)
    assert whole["has_more"] is False
    assert whole["next_cursor"] is None


@pytest.mark.parametrize("order", ["desc", "asc"])
async def test_before_walks_back_towards_the_start(
    client: httpx.AsyncClient, busy: Account, order: str
) -> None:
    everything = await _everything(client, busy, order)
    # Start at the end of the list and page back to its beginning.
    page = await list_page(client, busy, AUDIT, limit=10, order=order, before=everything[-1])
    assert ids(page) == everything[14:24]
    assert page["has_more"] is True
    assert page["next_cursor"] == everything[14]

    page = await list_page(client, busy, AUDIT, limit=10, order=order, before=page["next_cursor"])
    assert ids(page) == everything[4:14]
    assert page["has_more"] is True

    page = await list_page(client, busy, AUDIT, limit=10, order=order, before=page["next_cursor"])
    assert ids(page) == everything[0:4]
    assert page["has_more"] is False
    assert page["next_cursor"] is None


async def test_after_and_before_select_a_window(client: httpx.AsyncClient, busy: Account) -> None:
    everything = await _everything(client, busy, "desc")
    after_page = await list_page(client, busy, AUDIT, limit=3, after=everything[5])
    assert ids(after_page) == everything[6:9]
    before_page = await list_page(client, busy, AUDIT, limit=3, before=everything[5])
    assert ids(before_page) == everything[2:5]
    # A cursor past the end gives an empty last page.
    empty = await list_page(client, busy, AUDIT, after=everything[-1])
    assert empty == {"data": [], "has_more": False, "next_cursor": None}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"after": "not-a-cursor"}, "after"),
        ({"before": "aud_"}, "before"),
        ({"after": new_id("key")}, "after"),  # an id, but of another resource type
        ({"after": "aud_" + "Z" * 60}, "after"),  # too long
        ({"after": new_id("aud"), "before": new_id("aud")}, "after"),
    ],
)
async def test_bad_cursors_are_422(
    client: httpx.AsyncClient, account: Account, params: dict[str, str], field: str
) -> None:
    response = await client.get(AUDIT, params=params, headers=account.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert [e["field"] for e in problem["errors"]] == [field]


async def test_admin_audit_pages_across_users(
    client: httpx.AsyncClient, admin: Account, busy: Account
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(20):
        params: dict[str, Any] = {"limit": 7}
        if cursor:
            params["after"] = cursor
        response = await client.get("/v1/admin/audit", params=params, headers=admin.headers)
        assert response.status_code == 200
        page = response.json()
        seen += ids(page)
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    # 25 events of `busy`, 2 of the second account, 1 login of the admin.
    assert len(seen) == len(set(seen)) == EVENTS + 3
    assert seen == sorted(seen, reverse=True)
    filtered = await client.get(
        "/v1/admin/audit", params={"user_id": busy.id, "limit": 200}, headers=admin.headers
    )
    assert len(filtered.json()["data"]) == EVENTS
