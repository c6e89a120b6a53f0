"""Helpers of the sessions, messages and tool-execution tests."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI

from agenthub.db.models.agents import Agent
from agenthub.db.models.projects import Project
from support import Account, assert_problem


def expect(response: httpx.Response, status: int) -> Any:
    """The JSON body of a response that must have this status (a checked problem for errors)."""
    if status >= 400:
        return assert_problem(response, status)
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def new_session(client: httpx.AsyncClient, account: Account, **body: Any) -> dict[str, Any]:
    """Create a session (agent type `primary` unless given) and return it."""
    if "agent_id" not in body:
        body.setdefault("agent_type", "primary")
    created = expect(await client.post("/v1/sessions", json=body, headers=account.headers), 201)
    session: dict[str, Any] = created["session"]
    return session


async def get_session(
    client: httpx.AsyncClient, account: Account, session_id: str, **params: Any
) -> dict[str, Any]:
    response = await client.get(
        f"/v1/sessions/{session_id}", params=params, headers=account.headers
    )
    session: dict[str, Any] = expect(response, 200)
    return session


async def post_message(
    client: httpx.AsyncClient,
    account: Account,
    session_id: str,
    content: str = "hello",
    **body: Any,
) -> dict[str, Any]:
    body.setdefault("role", "user")
    response = await client.post(
        f"/v1/sessions/{session_id}/messages",
        json={"content": content, **body},
        headers=account.headers,
    )
    message: dict[str, Any] = expect(response, 201)
    return message


async def add_agent(
    app: FastAPI, account: Account, agent_type: str, project_id: str | None = None
) -> str:
    """An agent of the account, written directly (the agents API is tested on its own)."""
    async with app.state.database.transaction() as db:
        agent = Agent(
            user_id=account.id, name=f"{agent_type} agent", type=agent_type, project_id=project_id
        )
        db.add(agent)
        await db.flush()
        return agent.id


async def add_project(app: FastAPI, account: Account, name: str = "Apollo") -> str:
    async with app.state.database.transaction() as db:
        project = Project(user_id=account.id, name=name)
        db.add(project)
        await db.flush()
        return project.id
