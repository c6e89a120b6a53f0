from __future__ import annotations

import httpx

from support import Account


async def test_profile_of_new_account(client: httpx.AsyncClient, account: Account) -> None:
    response = await client.get("/v1/user/profile", headers=account.headers)
    assert response.status_code == 200
    assert response.json()["email"] == account.email


async def test_admin_audit(client: httpx.AsyncClient, admin: Account, account: Account) -> None:
    response = await client.get("/v1/admin/audit", headers=admin.headers)
    assert response.status_code == 200
    assert {e["action"] for e in response.json()["data"]} >= {"auth.register", "auth.login"}
    denied = await client.get("/v1/admin/audit", headers=account.headers)
    assert denied.status_code == 403
