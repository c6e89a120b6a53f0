"""A real Prometheus server scrapes a real `agenthub serve` and `agenthub worker`: what a test
does shows up in PromQL, every dashboard query is valid PromQL there, and the shipped alert
rules load and evaluate without error."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from conftest import TEST_SECRET
from jobs.worker_support import redis_prefix, workers
from monitoring.deploy_support import (
    Prometheus,
    alert_rules,
    dashboard_queries,
    poll,
    prometheus_server,
    require_binary,
)
from processes import clean_env, free_port, server_process
from support import PASSWORD

pytestmark = pytest.mark.slow

SCRAPED_WITHIN = 20.0


@dataclass
class Stack:
    api: httpx.Client
    prometheus: Prometheus


@pytest.fixture(scope="module")
def redis() -> Iterator[dict[str, str]]:
    """The node and the worker share their events through Redis."""
    with redis_prefix() as settings:
        yield settings


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, redis: dict[str, str]) -> Iterator[Stack]:
    """An API node and a worker (with its metrics port) on one SQLite file and Redis, both
    scraped by a Prometheus server with the shipped alert rules."""
    require_binary("prometheus")
    workdir = tmp_path_factory.mktemp("prometheus")
    env = clean_env(
        AGENTHUB_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'agenthub.db'}",
        AGENTHUB_SECRET_KEY=TEST_SECRET,
        AGENTHUB_LOG_LEVEL="WARNING",
        AGENTHUB_FILES_DIR=str(workdir / "files"),
        AGENTHUB_JOB_POLL_SECONDS="0.2",
        **redis,
    )
    metrics_port = free_port()
    with (
        server_process(workdir, env, "--no-worker") as node,
        workers(workdir, env) as group,
    ):
        group.start("--metrics-port", str(metrics_port))
        jobs = {
            "agenthub": f"127.0.0.1:{node.port}",
            "agenthub-worker": f"127.0.0.1:{metrics_port}",
        }
        with (
            prometheus_server(workdir / "prometheus", jobs) as prometheus,
            httpx.Client(base_url=node.http, timeout=10) as api,
        ):
            yield Stack(api, prometheus)


def login(api: httpx.Client, email: str) -> dict[str, str]:
    created = api.post("/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert created.status_code == 201, created.text
    tokens = api.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def test_a_called_route_is_counted_in_prometheus(stack: Stack) -> None:
    headers = login(stack.api, "counted@example.com")
    assert stack.api.get("/v1/sessions", headers=headers).status_code == 200

    def counted() -> dict[str, str] | None:
        series = stack.prometheus.query('http_requests_total{route="/v1/sessions"}')
        return series[0]["metric"] if series else None

    labels = poll(counted, SCRAPED_WITHIN, "http_requests_total for /v1/sessions")
    assert labels["method"] == "GET" and labels["status"] == "200"
    assert labels["job"] == "agenthub"
    [sample] = stack.prometheus.query('http_requests_total{route="/v1/sessions", status="200"}')
    assert float(sample["value"][1]) == 1


def test_jobs_and_tokens_are_scraped_from_the_worker(stack: Stack) -> None:
    headers = login(stack.api, "jobs@example.com")
    job = {"kind": "llm.complete", "input": {"prompt": "count my words", "runner": "echo"}}
    assert stack.api.post("/v1/jobs", json=job, headers=headers).status_code == 202

    def completed() -> list[dict[str, Any]] | None:
        query = 'jobs_total{job="agenthub-worker", kind="llm.complete", status="completed"}'
        return stack.prometheus.query(query) or None

    [jobs] = poll(completed, SCRAPED_WITHIN, "the worker's jobs_total")
    assert jobs["value"][1] == "1"
    tokens = stack.prometheus.query('token_usage_total{job="agenthub-worker"}')
    assert {s["metric"]["direction"] for s in tokens} == {"prompt", "completion"}
    assert all(float(s["value"][1]) > 0 for s in tokens)


def test_every_dashboard_query_is_valid_promql(stack: Stack) -> None:
    queries = dashboard_queries()
    assert len(queries) > 20
    for _, expr in queries:
        stack.prometheus.query(expr)  # asserts "status": "success"
    # And the request-rate panel shows a route as soon as it is called.
    assert stack.api.get("/v1/projects").status_code == 401
    [by_route] = [expr for title, expr in queries if title == "Request rate by route"]

    def shown() -> list[dict[str, object]] | None:
        series = stack.prometheus.query(by_route)
        return [s for s in series if s["metric"]["route"] == "/v1/projects"] or None

    [projects] = poll(shown, SCRAPED_WITHIN, "/v1/projects on the request-rate panel")
    assert projects["metric"] == {"method": "GET", "route": "/v1/projects"}


def test_the_shipped_alert_rules_load_and_evaluate(stack: Stack) -> None:
    shipped = {rule["alert"] for rule in alert_rules()}

    def evaluated() -> list[dict[str, object]] | None:
        groups = stack.prometheus.api("rules")["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if all(rule["health"] != "unknown" for rule in rules) else None

    rules = poll(evaluated, SCRAPED_WITHIN, "the rules' first evaluation")
    assert {rule["name"] for rule in rules} == shipped
    assert [(r["name"], r["health"], r.get("lastError", "")) for r in rules] == [
        (r["name"], "ok", "") for r in rules
    ]
