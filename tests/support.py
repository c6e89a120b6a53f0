"""Helpers shared by tests (import as `from support import ...`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI

from agenthub.core.events import DomainEvent
from agenthub.db.models.sessions import ChatSession

PASSWORD = "correct horse battery"


@dataclass
class Account:
    """A registered, logged-in user as a test drives it."""

    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> Account:
    """Register `email` through the API and log in."""
    created = await client.post("/v1/auth/register", json={"email": email, "password": password})
    assert created.status_code == 201, created.text
    login = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200, login.text
    tokens = login.json()
    return Account(
        id=created.json()["id"],
        email=email,
        password=password,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


PROBLEM_JSON = "application/problem+json"

# Strings that would betray a traceback, SQL, a database library or a secret column behind a
# response.
LEAK_MARKERS = (
    "Traceback",
    'File "',
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "psycopg",
    "SELECT ",
    "INSERT ",
    "password_hash",
    "key_hash",
)


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status that leaks nothing internal;
    returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers["content-type"]
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status"} <= body.keys(), body
    assert body["status"] == status
    assert isinstance(body["type"], str) and body["type"].startswith("https://"), body
    assert isinstance(body["title"], str) and body["title"], body
    for marker in LEAK_MARKERS:
        assert marker not in response.text, f"{marker!r} leaked: {response.text}"
    return body


def error_fields(problem: dict[str, Any]) -> set[str]:
    """The `field` of every entry in a 422 problem's `errors`, each a `{field, message}`."""
    errors = problem["errors"]
    assert isinstance(errors, list) and errors, problem
    for error in errors:
        assert set(error) == {"field", "message"}, error
        assert isinstance(error["message"], str) and error["message"], error
    return {error["field"] for error in errors}


def assert_iso_utc(value: str) -> datetime:
    """An ISO 8601 timestamp in UTC written with a `Z`; returns it parsed."""
    assert value.endswith("Z"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


async def profile_status(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    """The status of `GET /v1/user/profile` with these headers (do they authenticate?)."""
    return (await client.get("/v1/user/profile", headers=headers)).status_code


async def list_page(
    client: httpx.AsyncClient, account: Account, path: str, **params: Any
) -> dict[str, Any]:
    """One page of a cursor-paged list (`data`, `has_more`, `next_cursor`)."""
    response = await client.get(path, params=params, headers=account.headers)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    assert set(page) == {"data", "has_more", "next_cursor"}
    return page


def ids(page: dict[str, Any]) -> list[str]:
    return [item["id"] for item in page["data"]]


def names(page: dict[str, Any]) -> list[str]:
    return [item["name"] for item in page["data"]]


class EventLog:
    """Collects what the app publishes after each commit."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []

    def __call__(self, events: list[DomainEvent]) -> None:
        self.events.extend(events)

    def named(self, event: str, channel: str | None = None) -> list[DomainEvent]:
        return [
            e for e in self.events if e.event == event and (channel is None or e.channel == channel)
        ]


def record_events(app: FastAPI) -> EventLog:
    """From now on, collect every domain event the app publishes (published after commit)."""
    log = EventLog()
    app.state.database.observe_events(log)
    return log


async def seed_session(app: FastAPI, user_id: str, **columns: Any) -> str:
    """Insert a chat session row directly (`project_id`, `agent_id`, token counts, ...)."""
    async with app.state.database.transaction() as db:
        session = ChatSession(user_id=user_id, agent_type="primary", **columns)
        db.add(session)
        await db.flush()
        return session.id
