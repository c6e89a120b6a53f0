"""`agent.reply` through the HTTP API on both databases: `"respond": true` queues it, the reply
streams on `session:{id}` and is stored once (also after a retry) with its tokens, tool calls
and metadata; the agent's settings and the job's overrides apply; agent metrics and logs and
the profile totals count it; another user's session is out of reach; Idempotency-Key holds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conftest import AccountFactory, asgi_client, custom_app
from jobs_support import channel_events, create_job, wait_job
from runners.openai_server import OpenAIServer, reply
from session_support import expect, get_session, new_session, post_message
from support import Account, register

SYSTEM_PROMPT = "You are terse and kind"  # 5 words: the echo runner counts words as tokens
SEARCH = {"name": "search", "arguments": {"q": "x"}}


@pytest.fixture
async def app(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """Retries follow each other after about 10 ms instead of a second."""
    async with custom_app(database_url, tmp_path, job_backoff_base_seconds=0.01) as application:
        yield application


async def new_agent(client: httpx.AsyncClient, account: Account, **fields: Any) -> dict[str, Any]:
    body = {"name": "Helper", "type": "primary", "runner": "echo", **fields}
    agent: dict[str, Any] = expect(
        await client.post("/v1/agents", json=body, headers=account.headers), 201
    )
    return agent


async def ask(
    client: httpx.AsyncClient, account: Account, session_id: str, content: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Post a user message with `respond: true`; the message and the finished job."""
    created = await post_message(client, account, session_id, content, respond=True)
    done = await wait_job(client, account, created["job"]["id"])
    return created["message"], done


async def messages_of(
    client: httpx.AsyncClient, account: Account, session_id: str
) -> list[dict[str, Any]]:
    page = expect(
        await client.get(f"/v1/sessions/{session_id}/messages", headers=account.headers), 200
    )
    data: list[dict[str, Any]] = page["data"]
    return data


async def reply_events(
    client: httpx.AsyncClient, account: Account, session_id: str, reply_id: str
) -> list[dict[str, Any]]:
    """The session's events once the reply's `message.created` is among them (it is published
    right after the completion commits)."""
    deadline = time.monotonic() + 10
    while True:
        events = await channel_events(client, account, f"session:{session_id}")
        if any(e["event"] == "message.created" and e["data"]["id"] == reply_id for e in events):
            return events
        assert time.monotonic() < deadline, events
        await asyncio.sleep(0.02)


async def test_respond_queues_a_reply_that_streams_and_is_stored(
    client: httpx.AsyncClient, account: Account
) -> None:
    agent = await new_agent(client, account, system_prompt=SYSTEM_PROMPT, options={"delay_ms": 1})
    session = await new_session(client, account, agent_id=agent["id"])
    created = await post_message(client, account, session["id"], "hello there world", respond=True)
    asked, job = created["message"], created["job"]
    assert job["status"] == "queued"
    assert (job["kind"], job["session_id"], job["agent_id"]) == (
        "agent.reply",
        session["id"],
        agent["id"],
    )

    done = await wait_job(client, account, job["id"])
    assert done["status"] == "completed", done
    usage = {"prompt_tokens": 5 + 3, "completion_tokens": 3}  # system prompt + the question
    assert done["result"]["usage"] == usage
    assert done["result"]["tool_calls"] == 0
    user, reply = await messages_of(client, account, session["id"])
    assert user["id"] == asked["id"]
    assert reply["id"] == done["result"]["message_id"]
    assert (reply["role"], reply["content"]) == ("assistant", "hello there world")
    assert (reply["prompt_tokens"], reply["completion_tokens"]) == (8, 3)
    assert reply["metadata"] == {
        "job_id": job["id"],
        "reply_to": asked["id"],
        "runner": "echo",
        "model": "echo",
    }
    after = await get_session(client, account, session["id"])
    assert after["message_count"] == 2
    assert (after["prompt_tokens"], after["completion_tokens"]) == (8, 3)
    assert after["last_activity_at"] == reply["created_at"]

    events = await reply_events(client, account, session["id"], reply["id"])
    deltas = [e for e in events if e["event"] == "message.delta"]
    assert "".join(e["data"]["delta"] for e in deltas) == reply["content"]
    assert [e["data"]["index"] for e in deltas] == list(range(len(deltas)))
    assert {(e["data"]["job_id"], e["data"]["reply_to"], e["data"]["attempt"]) for e in deltas} == {
        (job["id"], asked["id"], 1)
    }
    created_at = next(
        e["offset"]
        for e in events
        if e["event"] == "message.created" and e["data"]["id"] == reply["id"]
    )
    assert max(e["offset"] for e in deltas) < created_at


async def test_history_and_default_runner_without_an_agent(
    client: httpx.AsyncClient, account: Account
) -> None:
    session = await new_session(client, account, agent_type="research")
    first = await post_message(client, account, session["id"], "one two")
    await post_message(client, account, session["id"], "three", role="assistant")
    await post_message(client, account, session["id"], "four five", role="tool")
    _, done = await ask(client, account, session["id"], "six")
    assert done["status"] == "completed", done
    # No system prompt; the tool message reads "Tool result: four five" (4 words).
    assert done["result"]["usage"] == {"prompt_tokens": 2 + 1 + 4 + 1, "completion_tokens": 1}
    reply = (await messages_of(client, account, session["id"]))[-1]
    assert (reply["content"], reply["metadata"]["runner"]) == ("six", "echo")

    # A reply to an earlier message sees the history up to that message only.
    job = await create_job(
        client, account, "agent.reply", {"session_id": session["id"], "message_id": first["id"]}
    )
    done = await wait_job(client, account, job["id"])
    assert done["result"]["usage"] == {"prompt_tokens": 2, "completion_tokens": 2}
    assert done["session_id"] == session["id"]
    replies = [
        m
        for m in await messages_of(client, account, session["id"])
        if m["id"] == done["result"]["message_id"]
    ]
    assert [(m["content"], m["metadata"]["reply_to"]) for m in replies] == [
        ("one two", first["id"])
    ]


async def test_tool_calls_of_the_agent_are_recorded_on_the_reply(
    client: httpx.AsyncClient, account: Account
) -> None:
    agent = await new_agent(client, account, options={"tool_calls": [SEARCH]})
    session = await new_session(client, account, agent_id=agent["id"])
    _, done = await ask(client, account, session["id"], "find x")
    assert done["result"]["tool_calls"] == 1
    page = expect(
        await client.get(f"/v1/sessions/{session['id']}/tools", headers=account.headers), 200
    )
    [tool] = page["data"]
    assert (tool["tool_name"], tool["tool_type"], tool["input"]) == (
        "search",
        "function",
        {"q": "x"},
    )
    assert (tool["status"], tool["message_id"]) == ("succeeded", done["result"]["message_id"])
    assert tool["finished_at"] is not None

    # The job's options override the agent's key by key: no tool call this time.
    message = await post_message(client, account, session["id"], "again")
    job = await create_job(
        client,
        account,
        "agent.reply",
        {"session_id": session["id"], "message_id": message["id"], "options": {"tool_calls": []}},
    )
    assert (await wait_job(client, account, job["id"]))["result"]["tool_calls"] == 0
    page = expect(
        await client.get(f"/v1/sessions/{session['id']}/tools", headers=account.headers), 200
    )
    assert len(page["data"]) == 1


async def test_a_retried_reply_is_stored_once(client: httpx.AsyncClient, account: Account) -> None:
    agent = await new_agent(client, account, options={"fail_first": 1})
    session = await new_session(client, account, agent_id=agent["id"])
    _, done = await ask(client, account, session["id"], "try again")
    assert (done["status"], done["attempts"]) == ("completed", 2)
    replies = [
        m for m in await messages_of(client, account, session["id"]) if m["role"] == "assistant"
    ]
    assert [m["content"] for m in replies] == ["try again"]
    assert (await get_session(client, account, session["id"]))["message_count"] == 2
    job_events = [e["event"] for e in await channel_events(client, account, f"job:{done['id']}")]
    assert "job.retrying" in job_events

    logs = expect(await client.get(f"/v1/agents/{agent['id']}/logs", headers=account.headers), 200)
    [line] = logs["data"]
    assert line["level"] == "info"
    assert "completed" in line["message"] and "on attempt 2" in line["message"]


async def test_agent_metrics_logs_and_profile_totals_count_the_runs(
    client: httpx.AsyncClient, account: Account
) -> None:
    agent = await new_agent(client, account, system_prompt=SYSTEM_PROMPT)
    session = await new_session(client, account, agent_id=agent["id"])
    before = expect(await client.get("/v1/user/profile", headers=account.headers), 200)["usage"]
    first, done = await ask(client, account, session["id"], "alpha beta")
    _, again = await ask(client, account, session["id"], "gamma")
    # An invalid runner option (from the job) fails the run at once.
    bad = await create_job(
        client,
        account,
        "agent.reply",
        {"session_id": session["id"], "message_id": first["id"], "options": {"delay_ms": -1}},
    )
    failed = await wait_job(client, account, bad["id"])
    assert (failed["status"], failed["attempts"]) == ("failed", 1)

    metrics = expect(
        await client.get(f"/v1/agents/{agent['id']}/metrics", headers=account.headers), 200
    )
    assert (metrics["runs"], metrics["failures"]) == (3, 1)
    assert metrics["latency_ms"]["p50"] is not None
    assert metrics["latency_ms"]["p99"] == max(done["duration_ms"], again["duration_ms"])
    session_after = await get_session(client, account, session["id"])
    # The second run also reads the first exchange: 5 + 2 + 2 + 1 words.
    assert metrics["tokens"]["prompt"] == session_after["prompt_tokens"] == 7 + 10
    assert metrics["tokens"]["completion"] == session_after["completion_tokens"] == 2 + 1

    logs = expect(await client.get(f"/v1/agents/{agent['id']}/logs", headers=account.headers), 200)
    lines = logs["data"]
    assert [line["level"] for line in lines] == ["info", "info", "error"]
    assert [line["ts"] for line in lines] == sorted(line["ts"] for line in lines)
    assert (
        f"reply to {first['id']} completed in {done['duration_ms']} ms, 7+2 tokens"
        == (lines[0]["message"])
    )
    assert "delay_ms" in lines[2]["message"]
    recent = expect(
        await client.get(f"/v1/agents/{agent['id']}/logs?limit=1", headers=account.headers), 200
    )
    assert recent["data"] == lines[-1:]

    usage = expect(await client.get("/v1/user/profile", headers=account.headers), 200)["usage"]
    assert usage["prompt_tokens"] - before["prompt_tokens"] == 17
    assert usage["completion_tokens"] - before["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_another_users_session_is_out_of_reach(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    session = await new_session(client, account)
    message = await post_message(client, account, session["id"], "mine")
    intruder = await make_account()
    job = await create_job(
        client, intruder, "agent.reply", {"session_id": session["id"], "message_id": message["id"]}
    )
    failed = await wait_job(client, intruder, job["id"])
    assert (failed["status"], failed["error"]["type"], failed["attempts"]) == (
        "failed",
        "not_found",
        1,
    )
    assert failed["session_id"] is None
    assert (await get_session(client, account, session["id"]))["message_count"] == 1
    events = await channel_events(client, account, f"session:{session['id']}")
    assert not [e for e in events if e["event"] == "message.delta"]

    # A message of another session, and a deleted session, fail the same way.
    other = await new_session(client, account)
    job = await create_job(
        client, account, "agent.reply", {"session_id": other["id"], "message_id": message["id"]}
    )
    assert (await wait_job(client, account, job["id"]))["error"]["type"] == "not_found"
    expect(await client.delete(f"/v1/sessions/{session['id']}", headers=account.headers), 204)
    job = await create_job(
        client, account, "agent.reply", {"session_id": session["id"], "message_id": message["id"]}
    )
    assert (await wait_job(client, account, job["id"]))["error"]["type"] == "conflict"
    restored = expect(
        await client.post(f"/v1/sessions/{session['id']}/restore", headers=account.headers), 200
    )
    assert restored["session"]["message_count"] == 1

    # The input's shape is checked when the job is created.
    response = await client.post(
        "/v1/jobs",
        json={"kind": "agent.reply", "input": {"session_id": session["id"]}},
        headers=account.headers,
    )
    assert response.status_code == 422, response.text


async def test_a_session_deleted_while_the_reply_streams_gets_no_reply(
    client: httpx.AsyncClient, account: Account
) -> None:
    agent = await new_agent(client, account, options={"delay_ms": 20})
    session = await new_session(client, account, agent_id=agent["id"])
    created = await post_message(
        client, account, session["id"], " ".join(["word"] * 40), respond=True
    )
    await wait_job(client, account, created["job"]["id"], statuses=("running",))
    expect(await client.delete(f"/v1/sessions/{session['id']}", headers=account.headers), 204)
    failed = await wait_job(client, account, created["job"]["id"])
    assert (failed["status"], failed["error"]["type"]) == ("failed", "conflict")
    restored = expect(
        await client.post(f"/v1/sessions/{session['id']}/restore", headers=account.headers), 200
    )
    assert restored["session"]["message_count"] == 1
    assert restored["session"]["completion_tokens"] == 0


async def test_an_idempotent_replay_queues_one_reply(
    client: httpx.AsyncClient, account: Account
) -> None:
    session = await new_session(client, account)
    headers = {**account.headers, "Idempotency-Key": "ask-once"}
    body = {"role": "user", "content": "just once", "respond": True}
    url = f"/v1/sessions/{session['id']}/messages"
    first = expect(await client.post(url, json=body, headers=headers), 201)
    replay = expect(await client.post(url, json=body, headers=headers), 201)
    assert replay == first
    await wait_job(client, account, first["job"]["id"])
    jobs = expect(
        await client.get("/v1/jobs", params={"kind": "agent.reply"}, headers=account.headers), 200
    )
    assert [j["id"] for j in jobs["data"]] == [first["job"]["id"]]
    assert (await get_session(client, account, session["id"]))["message_count"] == 2


@asynccontextmanager
async def openai_session(
    database_url: str, tmp_path: Path, model: OpenAIServer
) -> AsyncIterator[tuple[httpx.AsyncClient, Account, str]]:
    """A server whose openai runner is `model`, a user, and a session of their openai agent."""
    settings = {"openai_base_url": model.base_url, "openai_api_key": "sk-reply-test"}
    async with (
        custom_app(database_url, tmp_path, **settings) as application,
        asgi_client(application) as client,
    ):
        account = await register(client, "openai-reply@example.com")
        agent = await new_agent(client, account, runner="openai")
        session = await new_session(client, account, agent_id=agent["id"])
        yield client, account, session["id"]


async def test_a_model_reply_with_a_lone_surrogate_is_stored_with_u_fffd(
    database_url: str, tmp_path: Path
) -> None:
    """A model's text is input too: a lone surrogate it streams (JSON's escape, as a provider
    could send it) is replaced before the reply is stored, not a failed job."""
    async with OpenAIServer() as model:
        model.then(reply("Olá \ud800 fim"))
        async with openai_session(database_url, tmp_path, model) as (client, account, sid):
            _, done = await ask(client, account, sid, "Say it")
            assert done["status"] == "completed", done
            stored = await messages_of(client, account, sid)
    assert [m["content"] for m in stored] == ["Say it", "Olá \ufffd fim"]


async def test_tool_turns_reach_the_model_paired_by_call_id(
    database_url: str, tmp_path: Path
) -> None:
    """An assistant turn's tool calls and the tool results that answer them (stored through
    the API) reach the model as the API pairs them; a result without a call id stays text."""
    call = {"id": "call_7", "name": "get_weather", "arguments": {"city": "Paris"}}
    async with OpenAIServer() as model:
        model.then(reply("21 degrees."))
        async with openai_session(database_url, tmp_path, model) as (client, account, sid):
            await post_message(client, account, sid, "Weather in Paris?")
            calls = await post_message(
                client, account, sid, "Checking.", role="assistant", tool_calls=[call]
            )
            result = await post_message(
                client, account, sid, '{"temp": 21}', role="tool", tool_call_id="call_7"
            )
            await post_message(client, account, sid, "an old result", role="tool")
            _, done = await ask(client, account, sid, "So?")
            assert done["status"] == "completed", done
            stored = await messages_of(client, account, sid)
    assert (calls["tool_calls"], calls["tool_call_id"]) == ([call], None)
    assert (result["tool_calls"], result["tool_call_id"]) == (None, "call_7")
    assert [(m["tool_calls"], m["tool_call_id"]) for m in stored[1:3]] == [
        ([call], None),
        (None, "call_7"),
    ]
    (sent,) = model.chats
    assert sent.body["messages"] == [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_7",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_7", "content": '{"temp": 21}'},
        {"role": "user", "content": "Tool result:\nan old result"},
        {"role": "user", "content": "So?"},
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"role": "user", "tool_calls": [{"id": "c", "name": "f"}]},
        {"role": "tool", "tool_calls": [{"id": "c", "name": "f"}]},
        {"role": "assistant", "tool_call_id": "c"},
        {"role": "assistant", "tool_calls": [{"id": "", "name": "f"}]},
    ],
)
async def test_tool_pairing_fields_belong_to_their_roles(
    client: httpx.AsyncClient, account: Account, body: dict[str, Any]
) -> None:
    session = await new_session(client, account)
    response = await client.post(
        f"/v1/sessions/{session['id']}/messages",
        json={"content": "x", **body},
        headers=account.headers,
    )
    assert response.status_code == 422, response.text
    assert await messages_of(client, account, session["id"]) == []
