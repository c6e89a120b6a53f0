"""A real server's request log and latency figures, on both deployments: a long stream is no
slow request and stays out of the latency percentiles (its duration has its own metric), and
the health probes log nothing from Alembic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import Deployment
from monitoring.metrics_support import samples, value
from processes import Server
from realtime_support import create_admin, eventually, sse_stream

pytestmark = pytest.mark.slow

SLOW_SECONDS = 1.0
KEEPALIVE_SECONDS = 0.25
KEEPALIVES = 6  # the stream stays open at least 1.5 s: longer than a slow request
EVENTS = "/v1/events"


@pytest.fixture(scope="module")
def server(deployment: Deployment) -> Iterator[Server]:
    """A node that logs every request as JSON; slow from one second on."""
    with deployment.node(
        AGENTHUB_LOG_LEVEL="INFO",
        AGENTHUB_LOG_FORMAT="json",
        AGENTHUB_SLOW_REQUEST_SECONDS=str(SLOW_SECONDS),
        AGENTHUB_SSE_KEEPALIVE_SECONDS=str(KEEPALIVE_SECONDS),
    ) as node:
        yield node


def log_lines(server: Server, start: int = 0) -> list[dict[str, Any]]:
    """The server's JSON log lines from byte `start` of its log."""
    text = server.log.read_bytes()[start:].decode()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def logged(server: Server, response: httpx.Response) -> dict[str, Any]:
    """The log line of the request that got `response` (written once the response is over)."""
    request_id = response.headers["x-request-id"]

    async def line() -> dict[str, Any] | None:
        return next(
            (
                line
                for line in log_lines(server)
                if line.get("request_id") == request_id and "status" in line
            ),
            None,
        )

    return await eventually(line)


async def test_a_long_stream_is_no_slow_request(
    server: Server, deployment: Deployment, api: httpx.AsyncClient
) -> None:
    admin = await create_admin(server.http, deployment.workdir, deployment.env)
    streamed = await samples(api, "http_stream_duration_seconds_count")
    async with sse_stream(server.http, f"user:{admin.id}", headers=admin.headers) as reader:
        assert (await reader.message()).event == "subscribed"
        for _ in range(KEEPALIVES):
            assert (await reader.next()).comment == "keep-alive"
        response = reader.response

    line = await logged(server, response)
    held_ms = KEEPALIVES * KEEPALIVE_SECONDS * 1000
    assert (line["event"], line["level"], line["route"]) == ("request", "info", EVENTS), line
    assert line["stream_ms"] >= held_ms > line["latency_ms"], line
    assert not [x for x in log_lines(server) if x.get("event") == "slow_request"]

    report = await api.get("/v1/monitoring/performance", headers=admin.headers)
    rows = {(r["method"], r["route"]): r["figures"] for r in report.json()["routes"]}
    assert rows[("GET", EVENTS)]["count"] == 1
    assert rows[("GET", EVENTS)]["p99_ms"] < held_ms
    assert report.json()["totals"]["p99_ms"] < held_ms
    after = await samples(api, "http_stream_duration_seconds_count")
    labels = {"method": "GET", "route": EVENTS}
    assert value(after, **labels) - value(streamed, **labels) == 1
    durations = await samples(api, "http_stream_duration_seconds_sum")
    assert value(durations, **labels) >= held_ms / 1000


async def test_health_probes_log_no_alembic_lines(server: Server, api: httpx.AsyncClient) -> None:
    start = server.log.stat().st_size
    for path in ("/v1/health", "/v1/health/ready", "/v1/health", "/v1/health/ready"):
        response = await api.get(path)
        assert response.status_code == 200, response.text
    await logged(server, response)

    lines = log_lines(server, start)
    assert [x["route"] for x in lines if "status" in x][-4:] == [
        "/v1/health",
        "/v1/health/ready",
    ] * 2
    assert not [x for x in lines if x.get("logger", "").startswith("alembic")], lines
