"""Benchmark the stats cache: each cached route uncached vs cached, on PostgreSQL.

On a fresh PostgreSQL database (dropped at the end) one user gets an agent, `--sessions`
sessions holding `--messages` messages, one completed `agent.reply` job per assistant message,
20 projects and 500 file rows, written straight into the tables. Then agenthub runs under
uvicorn three times, one after the other: with `AGENTHUB_CACHE_TTL_SECONDS=0` (every read is
computed: the baseline), with the in-process cache and with Redis. Each server answers
`--requests` sequential GETs per route over one keep-alive connection after a warm-up; printed
per route and server: p50/p99 of the server-side time (`X-Process-Time`) and the ratio
uncached / cached. Every cached answer must say `X-Cache: hit` and every baseline `miss`.

    .venv/bin/python bench/cache.py [--messages 20000] [--sessions 200] [--requests 200]
        [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
import redis
from sqlalchemy import insert

from agenthub.config import Settings
from agenthub.core.ids import new_id
from agenthub.db.base import utcnow
from agenthub.db.engine import Database
from agenthub.db.models.agents import Agent
from agenthub.db.models.files import StoredFile
from agenthub.db.models.jobs import Job
from agenthub.db.models.projects import Project
from agenthub.db.models.sessions import ChatSession, Message
from common import (
    AGENTHUB_TARGET,
    exit_on_sigterm,
    expect,
    percentile,
    postgres_database,
    register_user,
    run_main,
    server_env,
    uvicorn_server,
    versions_line,
)

ROUTES = ("sessions", "projects", "files", "jobs", "agent metrics")
SERVERS = ("uncached", "memory", "redis")


async def seed(url: str, user_id: str, messages: int, sessions: int) -> str:
    """The rows of a busy user; the agent's id."""
    now = utcnow()
    agent_id = new_id("agt")
    per_session = max(2, messages // sessions)
    chats: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    for s in range(sessions):
        chat_id = new_id("ses")
        chats.append(
            {
                "id": chat_id,
                "user_id": user_id,
                "agent_id": agent_id,
                "agent_type": "primary",
                "message_count": per_session,
                "prompt_tokens": 20 * per_session,
                "completion_tokens": 30 * per_session,
                "archived_at": None if s < 5 else now,
            }
        )
        for m in range(per_session):
            assistant = m % 2 == 1
            at = now - timedelta(seconds=messages - len(rows))
            rows.append(
                {
                    "id": new_id("msg"),
                    "user_id": user_id,
                    "session_id": chat_id,
                    "role": "assistant" if assistant else "user",
                    "content": f"message {m} of session {s}",
                    "meta": {},
                    "prompt_tokens": 40 if assistant else 0,
                    "completion_tokens": 60 if assistant else 0,
                    "created_at": at,
                }
            )
            if assistant:
                jobs.append(
                    {
                        "user_id": user_id,
                        "kind": "agent.reply",
                        "status": "completed",
                        "input": {"session_id": chat_id, "message_id": rows[-2]["id"]},
                        "attempts": 1,
                        "session_id": chat_id,
                        "agent_id": agent_id,
                        "created_at": at,
                        "started_at": at,
                        "finished_at": at,
                        "duration_ms": 200 + len(jobs) % 700,
                    }
                )
    projects = [{"user_id": user_id, "name": f"project {p}"} for p in range(20)]
    files = [
        {
            "user_id": user_id,
            "filename": f"f{f}.txt",
            "content_type": "text/plain",
            "size": 1000 + f,
            "sha256": "0" * 64,
            "purpose": ("attachment", "document")[f % 2],
            "storage_key": f"bench/{f}",
        }
        for f in range(500)
    ]
    database = Database(Settings(_env_file=None, database_url=url))
    try:
        async with database.transaction() as db:
            db.add(Agent(id=agent_id, user_id=user_id, name="bench", type="primary"))
            await db.flush()
            for model, values in (
                (ChatSession, chats),
                (Message, rows),
                (Job, jobs),
                (Project, projects),
                (StoredFile, files),
            ):
                for start in range(0, len(values), 5000):
                    await db.execute(insert(model), values[start : start + 5000])
        async with database.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM (ANALYZE)")
    finally:
        await database.dispose()
    return agent_id


def measure(
    base_url: str, token: str, paths: dict[str, str], requests: int, expected: str
) -> dict[str, list[float]]:
    """Server-side milliseconds per route, `requests` sequential GETs each after a warm-up."""
    times: dict[str, list[float]] = {}
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        for name, path in paths.items():
            for _ in range(20):
                expect(client.get(path), 200)
            samples = []
            for _ in range(requests):
                response = client.get(path)
                expect(response, 200)
                if response.headers["X-Cache"] != expected:
                    raise RuntimeError(f"{name}: X-Cache is {response.headers['X-Cache']}")
                samples.append(float(response.headers["X-Process-Time"]) * 1000)
            times[name] = sorted(samples)
    return times


def set_up(base_url: str, url: str, opts: argparse.Namespace) -> tuple[str, dict[str, str]]:
    """Register the user through the API, seed its rows; its token and the routes' paths."""
    with httpx.Client(base_url=base_url) as client:
        token = register_user(client)
        profile = client.get("/v1/user/profile", headers={"Authorization": f"Bearer {token}"})
        expect(profile, 200)
    started = time.perf_counter()
    agent_id = asyncio.run(seed(url, profile.json()["id"], opts.messages, opts.sessions))
    print(f"seeded {opts.messages} messages in {time.perf_counter() - started:.1f} s")
    paths = {name: f"/v1/{name}/stats" for name in ROUTES[:4]}
    return token, {**paths, "agent metrics": f"/v1/agents/{agent_id}/metrics"}


def report(results: dict[str, dict[str, list[float]]], requests: int, loads: list[float]) -> None:
    print(
        f"\n{requests} sequential requests per route and server; server-side ms p50 / p99"
        f" (X-Process-Time); load average {', '.join(f'{v:.1f}' for v in loads)}"
    )
    print(f"{'route':<14}" + "".join(f"{s:>18}" for s in SERVERS) + "   uncached / cached p50")
    for name in ROUTES:
        p50 = {s: percentile(results[s][name], 0.5) for s in SERVERS}
        cells = "".join(
            f"{p50[s]:>10.2f} /{percentile(results[s][name], 0.99):>6.2f}" for s in SERVERS
        )
        ratios = ", ".join(f"{s} {p50['uncached'] / p50[s]:.1f}x" for s in SERVERS[1:])
        print(f"{name:<14}{cells}   {ratios}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    opts = parser.parse_args(argv)
    exit_on_sigterm()
    print(versions_line("agenthub stats cache benchmark (PostgreSQL)"), flush=True)
    prefix = f"bench{secrets.token_hex(4)}"
    settings = {
        "uncached": {"AGENTHUB_CACHE_TTL_SECONDS": "0"},
        "memory": {},
        "redis": {"AGENTHUB_REDIS_URL": opts.redis_url, "AGENTHUB_REDIS_PREFIX": prefix},
    }
    results: dict[str, dict[str, list[float]]] = {}
    loads: list[float] = []
    with postgres_database() as (url, workdir):
        from agenthub.db import migrate

        migrate.upgrade(url)
        token, paths = "", dict[str, str]()
        try:
            for name in SERVERS:
                env = server_env(
                    url, workdir, AGENTHUB_RATE_LIMIT_ENABLED="false", **settings[name]
                )
                with uvicorn_server(name, AGENTHUB_TARGET, env, workdir) as server:
                    if not paths:
                        token, paths = set_up(server.base_url, url, opts)
                    loads.append(os.getloadavg()[0])
                    expected = "miss" if name == "uncached" else "hit"
                    results[name] = measure(server.base_url, token, paths, opts.requests, expected)
        finally:
            client = redis.Redis.from_url(opts.redis_url)
            if keys := list(client.scan_iter(match=f"{prefix}:*")):
                client.delete(*keys)
    report(results, opts.requests, loads)
    return 0


if __name__ == "__main__":
    run_main(main)
