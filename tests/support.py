"""Helpers shared by tests (import as `from support import ...`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from agenthub.core.events import DomainEvent
from agenthub.sessions.models import ChatSession

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


PROBLEM_JSON = "application/problem+json"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


def error_fields(problem: dict[str, Any]) -> set[str]:
    """The `field` of every entry in a 422 problem's `errors`."""
    return {error["field"] for error in problem["errors"]}


def record_events(app: FastAPI) -> list[DomainEvent]:
    """Every domain event the app publishes from now on (published after commit)."""
    published: list[DomainEvent] = []

    async def publish(events: list[DomainEvent]) -> None:
        published.extend(events)

    app.state.database.publisher = publish
    return published


async def seed_session(app: FastAPI, user_id: str, **columns: Any) -> str:
    """Insert a chat session row directly (`project_id`, `agent_id`, token counts, ...)."""
    async with app.state.database.transaction() as db:
        session = ChatSession(user_id=user_id, agent_type="primary", **columns)
        db.add(session)
        await db.flush()
        return session.id
