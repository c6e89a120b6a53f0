"""`GET /v1/search?type=ideas` on SQLite (FTS5) and PostgreSQL (tsvector): the idea text and
the generated title are found, ranked, with highlighted and escaped snippets; only the
caller's; the index follows changes to the title and text; any text is a query."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import delete, update

from agenthub.db.models.ideas import Idea
from conftest import AccountFactory
from ideas_support import generated
from search_support import check_index
from support import Account


async def search_ideas(client: httpx.AsyncClient, account: Account, q: str) -> list[dict[str, Any]]:
    response = await client.get(
        "/v1/search", params={"q": q, "type": "ideas"}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["data"]
    return hits


async def test_ideas_are_found_ranked_with_snippets(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    once = await generated(client, account, "Greenhouse sensors\nA dashboard for humidity data")
    twice = await generated(client, account, "Humidity alerts\nPush humidity warnings to phones")
    await generated(client, account, "Recipe planner for busy parents")
    await check_index(app)

    hits = await search_ideas(client, account, "humidity")
    assert [hit["id"] for hit in hits] == [twice["id"], once["id"]]
    assert hits[0]["rank"] > hits[1]["rank"]
    hit = hits[1]
    assert hit["type"] == "idea"
    assert hit["session_id"] is None
    assert hit["role"] is None
    assert hit["title"] == "Greenhouse sensors"
    assert hit["created_at"] == once["created_at"]
    assert "<mark>humidity</mark> data" in hit["snippet"]


async def test_snippet_escapes_html(client: httpx.AsyncClient, account: Account) -> None:
    await generated(client, account, 'Widget <script>alert("x")</script> & gizmo builder')

    (hit,) = await search_ideas(client, account, "gizmo")
    assert "<mark>gizmo</mark>" in hit["snippet"]
    assert "&lt;script&gt;" in hit["snippet"]
    assert "&amp;" in hit["snippet"]
    assert hit["snippet"].replace("<mark>gizmo</mark>", "").count("<") == 0


async def test_index_follows_title_text_and_deletes(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    idea = await generated(client, account, "Quokka photo portal")
    assert idea["title"] == "Quokka photo portal"
    assert [hit["id"] for hit in await search_ideas(client, account, "quokka")] == [idea["id"]]

    # No route edits an idea: change it in the database, as an admin tool would.
    async with app.state.database.transaction() as db:
        await db.execute(update(Idea).where(Idea.id == idea["id"]).values(title="Marsupial hub"))
    await check_index(app)
    (hit,) = await search_ideas(client, account, "marsupial")
    assert hit["title"] == "Marsupial hub"
    assert "<mark>Marsupial</mark>" in hit["snippet"]
    listed = await client.get("/v1/ideas", params={"q": "marsupial"}, headers=account.headers)
    assert [item["id"] for item in listed.json()["data"]] == [idea["id"]]

    async with app.state.database.transaction() as db:
        await db.execute(update(Idea).where(Idea.id == idea["id"]).values(idea="Wombat maps"))
    await check_index(app)
    assert await search_ideas(client, account, "quokka") == []
    assert len(await search_ideas(client, account, "wombat")) == 1

    async with app.state.database.transaction() as db:
        await db.execute(delete(Idea).where(Idea.id == idea["id"]))
    await check_index(app)
    assert await search_ideas(client, account, "wombat") == []
    assert await search_ideas(client, account, "marsupial") == []


async def test_only_the_callers_ideas(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    other = await make_account()
    await generated(client, other, "Walrus migration tracker")
    mine = await generated(client, account, "Walrus feeding schedule")

    assert [hit["id"] for hit in await search_ideas(client, account, "walrus")] == [mine["id"]]
    assert await search_ideas(client, account, "migration") == []


async def test_any_text_is_a_query(client: httpx.AsyncClient, account: Account) -> None:
    await generated(client, account, "ordinary idea text")
    for q in ['"', "AND OR", "NOT", "foo*", "NEAR(a b, 2)", "^", "idea:secret", "&|!<>", "';--"]:
        assert await search_ideas(client, account, q) == [], q
        listed = await client.get("/v1/ideas", params={"q": q}, headers=account.headers)
        assert listed.status_code == 200, listed.text
        assert listed.json()["data"] == [], q
