"""Requests are labelled by their full route template, routes of a router included in another
too, in `/metrics`, `/v1/monitoring/performance` and the request log lines; a streamed response
is timed as a stream."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from conftest import asgi_client, custom_app, login_admin
from monitoring.metrics_support import samples, value
from session_support import new_session

MESSAGES = "/v1/sessions/{session_id}/messages"
EXPORT = "/v1/sessions/{session_id}/export"
PARAMETER = re.compile(r"\{[^}]+\}")


@dataclass
class Served:
    app: FastAPI
    client: httpx.AsyncClient
    caplog: pytest.LogCaptureFixture

    def lines(self, response: httpx.Response) -> list[dict[str, Any]]:
        """The request log lines of the request that got `response`."""
        request_id = response.headers["x-request-id"]
        return [
            r.msg
            for r in self.caplog.records
            if r.name == "agenthub.http"
            and isinstance(r.msg, dict)
            and r.msg.get("request_id") == request_id
        ]


@pytest.fixture
async def served(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Served]:
    """An app that logs every request (no rate limit: a walk of every route is no flood)."""
    async with (
        custom_app(database_url, tmp_path, log_level="INFO", rate_limit_enabled=False) as app,
        asgi_client(app) as client,
    ):
        logging.getLogger().addHandler(caplog.handler)  # the app replaced the root handlers
        yield Served(app, client, caplog)


async def test_a_nested_route_is_labelled_by_its_full_template(served: Served) -> None:
    client = served.client
    admin = await login_admin(served.app, client)
    session = await new_session(client, admin)
    before = await samples(client, "http_requests_total")

    response = await client.get(f"/v1/sessions/{session['id']}/messages", headers=admin.headers)

    assert response.status_code == 200, response.text
    assert [line["route"] for line in served.lines(response)] == [MESSAGES]
    after = await samples(client, "http_requests_total")
    labels = {"method": "GET", "route": MESSAGES, "status": "200"}
    assert value(after, **labels) - value(before, **labels) == 1
    assert not [dict(k)["route"] for k in after if dict(k)["route"].startswith("/{")]
    report = await client.get("/v1/monitoring/performance", headers=admin.headers)
    rows = {(r["method"], r["route"]): r["figures"] for r in report.json()["routes"]}
    assert rows[("GET", MESSAGES)]["count"] == 1
    assert not [route for _, route in rows if route.startswith("/{")]


async def test_every_route_is_labelled_by_its_full_template(served: Served) -> None:
    """Every HTTP route of the app, called with a made-up value for each path parameter,
    is logged under the template it is served at."""
    called = 0
    for route in iter_route_contexts(served.app.routes):
        template = route.path
        if template is None or route.methods is None:  # WebSocket routes have no methods
            continue
        path = PARAMETER.sub("x1", template)
        for method in sorted(route.methods - {"HEAD"}):
            response = await served.client.request(method, path)
            routes = [line["route"] for line in served.lines(response)]
            assert routes == [template], (method, path, response.text)
            called += 1
    assert called > 80


async def test_an_export_is_timed_as_a_stream(served: Served) -> None:
    """Its latency is until its headers; how long it streamed is logged and measured apart."""
    client = served.client
    admin = await login_admin(served.app, client)
    session = await new_session(client, admin)
    before = await samples(client, "http_stream_duration_seconds_count")

    response = await client.get(f"/v1/sessions/{session['id']}/export", headers=admin.headers)

    assert response.status_code == 200, response.text
    [line] = served.lines(response)
    assert line["route"] == EXPORT
    assert line["stream_ms"] >= line["latency_ms"]
    after = await samples(client, "http_stream_duration_seconds_count")
    labels = {"method": "GET", "route": EXPORT}
    assert value(after, **labels) - value(before, **labels) == 1
    [unstreamed] = served.lines(await client.get("/v1/sessions", headers=admin.headers))
    assert "stream_ms" not in unstreamed
