"""The scale-out topology with real processes: an API node started with `--no-worker` runs no
job; an `agenthub worker` process on the same PostgreSQL and Redis runs them, and its events
reach the API node's clients (history and live SSE)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from conftest import Deployment
from jobs.worker_support import workers
from jobs_support import channel_events, create_job, wait_job
from realtime_support import eventually, sign_up, sse_stream

pytestmark = [
    pytest.mark.slow,
    pytest.mark.parametrize("deployment", ["redis"], indirect=True),
]


async def test_api_node_without_worker_and_a_worker_process(deployment: Deployment) -> None:
    with (
        deployment.node("--no-worker") as node,
        workers(deployment.workdir, deployment.env) as group,
    ):
        account = await sign_up(node.http)
        async with httpx.AsyncClient(base_url=node.http, timeout=10) as api:
            job = await create_job(
                api, account, "llm.complete", {"prompt": "scaled out", "runner": "echo"}
            )
            await asyncio.sleep(1.0)
            parked = await api.get(f"/v1/jobs/{job['id']}", headers=account.headers)
            assert parked.json()["status"] == "queued", "the API node ran a job"
            stats = [await api.get("/v1/jobs/stats", headers=account.headers) for _ in "12"]
            assert [r.headers["X-Cache"] for r in stats] == ["miss", "hit"]

            worker = group.start("--concurrency", "2")
            done = await wait_job(api, account, job["id"])
            assert done["status"] == "completed"
            assert done["result"]["text"] == "scaled out"
            assert f":{worker.proc.pid}:" in done["worker_id"]

            async def completed_stats() -> httpx.Response | None:
                response = await api.get("/v1/jobs/stats", headers=account.headers)
                return response if response.json()["by_status"] == {"completed": 1} else None

            # The worker process's writes invalidated the API node's cached stats (in Redis).
            assert (await eventually(completed_stats)).headers["X-Cache"] == "miss"
            events = await channel_events(api, account, f"job:{job['id']}")
            assert [e["event"] for e in events if e["event"] != "message.delta"] == [
                "job.queued",
                "job.started",
                "job.completed",
            ]
            queue = (await api.get("/v1/jobs/queue", headers=account.headers)).json()
            assert [w["id"] for w in queue["workers"]] == [done["worker_id"]]

            created = await api.post(
                "/v1/sessions", json={"agent_type": "primary"}, headers=account.headers
            )
            session_id = created.json()["session"]["id"]
            async with sse_stream(
                node.http, f"session:{session_id}", headers=account.headers
            ) as stream:
                posted = await api.post(
                    f"/v1/sessions/{session_id}/messages",
                    json={"role": "user", "content": "hello from afar", "respond": True},
                    headers=account.headers,
                )
                assert posted.status_code == 201, posted.text
                deltas: list[str] = []
                while True:
                    message = await stream.message(wait=20)
                    if message.event == "message.delta":
                        deltas.append(message.json()["data"]["delta"])
                    elif message.event == "message.created":
                        data = message.json()["data"]
                        if data["role"] == "assistant":
                            break
            assert "".join(deltas) == data["content"] == "hello from afar"
