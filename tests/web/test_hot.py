"""The hot reads of other domains (`auth.hot`: the profile, `jobs.hot`: a job's status) answer
the plain case in front of the router exactly as their routes do, and leave the rest to them.
(The session reads and the append: tests/sessions/test_hot.py.)"""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from conftest import AccountFactory, asgi_client, custom_app
from hot_support import ROUTED, Router, api_key, assert_answered_as_routed, hot_client
from jobs_support import create_job
from session_support import expect
from support import Account, assert_problem, register

LATER = "2100-01-01T00:00:00Z"  # a job that waits: its status stays as created


async def test_the_profile_and_a_job_are_the_routes_answers_without_reaching_them(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    by_key = await api_key(client, account)
    await api_key(client, account)  # two prefixes, newest first
    patch = {"username": "hot_reader", "preferences": {"theme": "dark", "n": [1, 2.5]}}
    expect(await client.patch("/v1/user/profile", json=patch, headers=account.headers), 200)
    job = await create_job(client, account, "llm.complete", {"prompt": "hi"}, run_at=LATER)
    paths = ["/v1/user/profile", f"/v1/jobs/{job['id']}"]
    await assert_answered_as_routed(app, client, account, by_key, paths)


async def test_other_profile_and_job_requests_go_on_to_the_routes(
    app: FastAPI, client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    owner, other = await make_account(), await make_account()
    job = await create_job(client, owner, "llm.complete", {"prompt": "hi"}, run_at=LATER)
    theirs = await create_job(client, other, "llm.complete", {"prompt": "hi"}, run_at=LATER)
    by_key = await api_key(client, owner)
    requests = [
        ("/v1/user/profile?x=1", owner.headers),
        ("/v1/user/profile", by_key),
        ("/v1/user/profile", {"Authorization": "Bearer not.a.token"}),
        (f"/v1/jobs/{job['id']}?x=1", owner.headers),
        (f"/v1/jobs/{job['id']}", by_key),
        (f"/v1/jobs/{theirs['id']}", owner.headers),  # the route's 404
        ("/v1/jobs/not-a-job-id", owner.headers),
        ("/v1/jobs/stats", owner.headers),
    ]
    router = Router()
    async with hot_client(app, router) as hot:
        for path, headers in requests:
            sent = await hot.get(path, headers=headers)
            assert sent.status_code == ROUTED, (path, sent.text)
    assert router.reached == [path if "?" in path else f"{path}?" for path, _ in requests]


async def test_another_users_job_and_an_ended_login_are_refused(
    client: httpx.AsyncClient, make_account: AccountFactory
) -> None:
    owner, other = await make_account(), await make_account()
    job = await create_job(client, owner, "llm.complete", {"prompt": "hi"}, run_at=LATER)
    assert_problem(await client.get(f"/v1/jobs/{job['id']}", headers=other.headers), 404)
    logout = await client.post("/v1/auth/logout", headers=owner.headers)
    assert logout.status_code == 204, logout.text
    for path in ("/v1/user/profile", f"/v1/jobs/{job['id']}"):
        assert_problem(await client.get(path, headers=owner.headers), 401)


async def test_the_users_rate_limit_counts_each_hot_read_once(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        custom_app(database_url, tmp_path, rate_limit_user="3/minute") as app,
        asgi_client(app) as client,
    ):
        account = await register(client, "limited@example.com")
        for _ in range(3):
            expect(await client.get("/v1/user/profile", headers=account.headers), 200)
        refused = await client.get("/v1/user/profile", headers=account.headers)
        assert_problem(refused, 429)
        assert int(refused.headers["Retry-After"]) >= 1
