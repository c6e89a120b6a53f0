"""`GET /v1/search` through the HTTP API on SQLite (FTS5) and PostgreSQL (tsvector): ranking,
highlighted and escaped snippets, isolation, soft-deleted sessions, an index that follows
updates and deletes made in the database, hostile queries, validation and paging."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, update

from agenthub.db.models.sessions import ChatSession, Message
from agenthub.search import sqlite as sqlite_search
from conftest import AccountFactory
from search_support import check_index
from session_support import new_session as create_session
from session_support import post_message
from support import Account, assert_problem, error_fields

HIT_FIELDS = {"type", "id", "session_id", "title", "role", "snippet", "rank", "created_at"}


async def new_session(client: httpx.AsyncClient, account: Account, title: str = "Chat") -> str:
    """The id of a new `primary` session."""
    return str((await create_session(client, account, title=title))["id"])


async def add_message(
    client: httpx.AsyncClient, account: Account, session_id: str, content: str
) -> str:
    """The id of a new user message."""
    return str((await post_message(client, account, session_id, content))["id"])


async def search(client: httpx.AsyncClient, account: Account, q: str, **params: Any) -> Any:
    response = await client.get("/v1/search", params={"q": q, **params}, headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def found_ids(
    client: httpx.AsyncClient, account: Account, q: str, **params: Any
) -> list[str]:
    return [hit["id"] for hit in (await search(client, account, q, **params))["data"]]


async def test_results_are_ranked_best_first(client: httpx.AsyncClient, account: Account) -> None:
    chat = await new_session(client, account)
    once = await add_message(client, account, chat, "apple pie crust")
    twice = await add_message(client, account, chat, "apple apple pie")
    await add_message(client, account, chat, "banana split sundae")

    body = await search(client, account, "apple")
    assert [hit["id"] for hit in body["data"]] == [twice, once]
    assert body["data"][0]["rank"] > body["data"][1]["rank"]
    assert body["has_more"] is False
    assert body["next_cursor"] is None

    hit = body["data"][0]
    assert set(hit) == HIT_FIELDS
    assert hit["type"] == "message"
    assert hit["session_id"] == chat
    assert hit["title"] == "Chat"
    assert hit["role"] == "user"
    assert hit["created_at"].endswith("Z")


async def test_every_word_must_match(client: httpx.AsyncClient, account: Account) -> None:
    chat = await new_session(client, account)
    both = await add_message(client, account, chat, "the red balloon floats")
    await add_message(client, account, chat, "the red car drives")
    assert await found_ids(client, account, "balloon red") == [both]
    assert await found_ids(client, account, "RED Balloon") == [both]
    assert await found_ids(client, account, "balloon submarine") == []


async def test_snippet_highlights_matches(client: httpx.AsyncClient, account: Account) -> None:
    chat = await new_session(client, account)
    await add_message(client, account, chat, "Deploy the Kubernetes cluster tonight, please")

    (hit,) = (await search(client, account, "kubernetes"))["data"]
    assert "<mark>Kubernetes</mark>" in hit["snippet"]
    assert hit["snippet"].count("<mark>") == 1
    assert "cluster tonight" in hit["snippet"]


async def test_snippet_escapes_html(client: httpx.AsyncClient, account: Account) -> None:
    chat = await new_session(client, account)
    content = '<script>alert("owned")</script> needle & <mark>fake</mark> <img src=x onerror=y>'
    await add_message(client, account, chat, content)

    (hit,) = (await search(client, account, "needle"))["data"]
    snippet = hit["snippet"]
    assert "<mark>needle</mark>" in snippet
    assert "&lt;/script&gt;" in snippet
    assert "script>" not in snippet
    assert "<img" not in snippet
    assert "&amp;" in snippet
    assert "&lt;mark&gt;fake&lt;/mark&gt;" in snippet
    # The only tags left are the highlights of the match.
    assert snippet.replace("<mark>needle</mark>", "").count("<") == 0


async def test_only_the_callers_rows(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    other = await make_account()
    theirs = await new_session(client, other, title="Secret walrus plans")
    await add_message(client, other, theirs, "the walrus moves at dawn")
    mine = await new_session(client, account, title="My walrus notes")
    my_message = await add_message(client, account, mine, "a walrus in the zoo")

    assert await found_ids(client, account, "walrus") == [my_message]
    assert await found_ids(client, account, "walrus", type="sessions") == [mine]
    assert await found_ids(client, account, "dawn") == []
    # Naming another user's session reveals nothing either.
    assert await found_ids(client, account, "walrus", session_id=theirs) == []
    assert len(await found_ids(client, other, "walrus")) == 1


async def test_session_filter(client: httpx.AsyncClient, account: Account) -> None:
    first = await new_session(client, account)
    second = await new_session(client, account)
    in_first = await add_message(client, account, first, "lighthouse keeper")
    in_second = await add_message(client, account, second, "lighthouse beam")

    assert sorted(await found_ids(client, account, "lighthouse")) == sorted([in_first, in_second])
    assert await found_ids(client, account, "lighthouse", session_id=second) == [in_second]


async def test_session_titles(client: httpx.AsyncClient, account: Account) -> None:
    match = await new_session(client, account, title="Trip to <Lisbon> & Porto")
    await new_session(client, account, title="Grocery list")

    body = await search(client, account, "lisbon", type="sessions")
    (hit,) = body["data"]
    assert hit["type"] == "session"
    assert hit["id"] == hit["session_id"] == match
    assert hit["title"] == "Trip to <Lisbon> & Porto"
    assert hit["role"] is None
    assert "<mark>Lisbon</mark>" in hit["snippet"]
    assert "&amp; Porto" in hit["snippet"]
    # Messages are the default type: the title alone is no message match.
    assert await found_ids(client, account, "lisbon") == []


async def test_deleted_sessions_are_hidden(client: httpx.AsyncClient, account: Account) -> None:
    chat = await new_session(client, account, title="Volcano research")
    message = await add_message(client, account, chat, "magma chamber pressure")

    deleted = await client.delete(f"/v1/sessions/{chat}", headers=account.headers)
    assert deleted.status_code in (200, 204), deleted.text
    assert await found_ids(client, account, "magma") == []
    assert await found_ids(client, account, "volcano", type="sessions") == []

    restored = await client.post(f"/v1/sessions/{chat}/restore", headers=account.headers)
    assert restored.status_code == 200, restored.text
    assert await found_ids(client, account, "magma") == [message]
    assert await found_ids(client, account, "volcano", type="sessions") == [chat]


async def test_index_follows_updates_and_deletes(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    chat = await new_session(client, account, title="Orchard log")
    message = await add_message(client, account, chat, "the quince tree blossomed")
    other = await add_message(client, account, chat, "the quince jelly set")
    assert sorted(await found_ids(client, account, "quince")) == sorted([message, other])

    # No route edits a message: change it in the database, as an admin tool would.
    async with app.state.database.transaction() as db:
        await db.execute(
            update(Message).where(Message.id == message).values(content="the medlar tree wilted")
        )
    await check_index(app)
    assert await found_ids(client, account, "quince") == [other]
    assert await found_ids(client, account, "medlar") == [message]
    (hit,) = (await search(client, account, "wilted"))["data"]
    assert "<mark>wilted</mark>" in hit["snippet"]

    renamed = await client.patch(
        f"/v1/sessions/{chat}", json={"title": "Vineyard log"}, headers=account.headers
    )
    assert renamed.status_code == 200, renamed.text
    assert await found_ids(client, account, "orchard", type="sessions") == []
    assert await found_ids(client, account, "vineyard", type="sessions") == [chat]
    # New messages change the session row (counters) but not the indexed title.
    await add_message(client, account, chat, "pruning done")
    assert await found_ids(client, account, "vineyard", type="sessions") == [chat]

    async with app.state.database.transaction() as db:
        await db.execute(delete(Message).where(Message.id == other))
    await check_index(app)
    assert await found_ids(client, account, "quince") == []

    # Deleting the session row removes its messages (ON DELETE CASCADE) from the index too.
    async with app.state.database.transaction() as db:
        await db.execute(delete(ChatSession).where(ChatSession.id == chat))
    await check_index(app)
    assert await found_ids(client, account, "medlar") == []
    assert await found_ids(client, account, "vineyard", type="sessions") == []


async def test_sqlite_index_survives_vacuum_and_rebuild(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    """The documented maintenance of the FTS5 indexes (migration 0003): VACUUM, then 'rebuild'."""
    engine = app.state.database.engine
    if engine.dialect.name != "sqlite":
        pytest.skip("FTS5 index maintenance is SQLite's")
    chat = await new_session(client, account, title="Glacier survey")
    kept = await add_message(client, account, chat, "crevasse depth measured")
    dropped = await add_message(client, account, chat, "crevasse photo blurred")
    async with app.state.database.transaction() as db:
        await db.execute(delete(Message).where(Message.id == dropped))

    async with engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.exec_driver_sql("VACUUM")
    async with engine.begin() as conn:
        await sqlite_search.rebuild_indexes(conn)
    await check_index(app)
    assert await found_ids(client, account, "crevasse") == [kept]
    assert await found_ids(client, account, "glacier", type="sessions") == [chat]


HOSTILE_QUERIES = [
    '"',
    '""',
    "'",
    "AND OR",
    "OR",
    "NOT",
    "*",
    "foo*",
    "NEAR(",
    "NEAR(a b, 2)",
    "(",
    ")",
    "^",
    "content:secret",
    "a:b",
    "-",
    "-excluded",
    "!",
    "&|!<>",
    "\\",
    "%_",
    "';--",
    "robert'); DROP TABLE messages;--",
    "{content}",
    "😀",
    "x" * 500,
    " ".join(["word"] * 100),
]


@pytest.mark.parametrize("q", HOSTILE_QUERIES)
@pytest.mark.parametrize("kind", ["messages", "sessions"])
async def test_any_text_is_a_query(
    client: httpx.AsyncClient, account: Account, q: str, kind: str
) -> None:
    chat = await new_session(client, account, title="ordinary title")
    await add_message(client, account, chat, "ordinary text")
    response = await client.get(
        "/v1/search", params={"q": q, "type": kind}, headers=account.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == []


async def test_operators_are_searched_as_text(client: httpx.AsyncClient, account: Account) -> None:
    chat = await new_session(client, account)
    logic = await add_message(client, account, chat, "black AND white OR grey, NOT blue")
    quoted = await add_message(client, account, chat, 'she said "hello" twice')
    await add_message(client, account, chat, "black coffee")

    assert await found_ids(client, account, "AND OR") == [logic]
    assert await found_ids(client, account, "black NOT") == [logic]
    assert await found_ids(client, account, '"hello"') == [quoted]
    assert await found_ids(client, account, 'hello"') == [quoted]
    assert await found_ids(client, account, "grey,") == [logic]


async def test_paging_returns_every_hit_once_in_rank_order(
    client: httpx.AsyncClient, account: Account
) -> None:
    chat = await new_session(client, account)
    for repeat in range(1, 6):
        await add_message(client, account, chat, " ".join(["comet"] * repeat + ["tail"]))

    everything = await search(client, account, "comet", limit=50)
    assert len(everything["data"]) == 5

    seen: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        page = await search(client, account, "comet", **params)
        seen.extend(page["data"])
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        params["after"] = page["next_cursor"]
    assert [hit["id"] for hit in seen] == [hit["id"] for hit in everything["data"]]
    ranks = [hit["rank"] for hit in seen]
    assert ranks == sorted(ranks, reverse=True)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "\t\n"}, "q"),
        ({"q": "x" * 501}, "q"),
        ({"q": "a\x00b"}, "q"),
        ({"q": "ok", "type": "everything"}, "type"),
        ({"q": "ok", "type": "ideas", "session_id": "ses_x"}, "session_id"),
        ({"q": "ok", "limit": 0}, "limit"),
        ({"q": "ok", "limit": 51}, "limit"),
        ({"q": "ok", "limit": "many"}, "limit"),
        ({"q": "ok", "after": "not-a-cursor"}, "after"),
        ({"q": "ok", "after": "c2VhcmNoOi0x"}, "after"),
    ],
)
async def test_invalid_requests_are_422(
    client: httpx.AsyncClient, account: Account, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/v1/search", params=params, headers=account.headers)
    assert field in error_fields(assert_problem(response, 422))


async def test_requires_authentication(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/search", params={"q": "anything"})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
