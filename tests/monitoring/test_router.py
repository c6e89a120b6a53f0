"""Metrics, health and the admin monitoring routes, through the API on both databases."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from conftest import asgi_client, custom_app, login_admin
from jobs_support import create_job, wait_job
from monitoring.metrics_support import samples, value
from session_support import new_session
from support import Account, assert_iso_utc, assert_problem, register

MACHINE_ALERTS = ("HighCpu", "HighMemory")
MONITORING_ROUTES = ("status", "performance", "database", "alerts", "dashboard")


async def test_monitoring_routes_are_for_admins_only(
    client: httpx.AsyncClient, account: Account, admin: Account
) -> None:
    for name in MONITORING_ROUTES:
        path = f"/v1/monitoring/{name}"
        assert_problem(await client.get(path), 401)
        assert_problem(await client.get(path, headers=account.headers), 403)
        response = await client.get(path, headers=admin.headers)
        assert response.status_code == 200, (path, response.text)


async def test_requests_are_counted_by_route_template_not_raw_path(
    client: httpx.AsyncClient, account: Account
) -> None:
    route = "/v1/sessions/{session_id}"
    before = await samples(client, "http_requests_total")
    for missing in ("ses_missing1", "ses_missing2"):
        assert_problem(await client.get(f"/v1/sessions/{missing}", headers=account.headers), 404)
    await client.get("/v1/health/live")
    after = await samples(client, "http_requests_total")
    counted = value(after, method="GET", route=route, status="404") - value(
        before, method="GET", route=route, status="404"
    )
    assert counted == 2
    routes = {dict(labels)["route"] for labels in after}
    assert not any("ses_missing" in r for r in routes)
    assert not any(r.startswith("/v1/health") or r == "/metrics" for r in routes)
    durations = await samples(client, "http_request_duration_seconds_count")
    assert value(durations, method="GET", route=route) >= 2


async def test_metrics_name_every_spec_family(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    families = {f.name for f in text_string_to_metric_families(response.text)}
    expected = {
        "http_requests",
        "http_request_duration_seconds",
        "http_stream_duration_seconds",
        "token_usage",
        "active_sessions",
        "websocket_connections",
        "realtime_events",
        "jobs",
        "job_duration_seconds",
        "job_queue_depth",
        "system_cpu_percent",
        "system_memory_bytes",
        "db_pool_size",
        "db_pool_checked_out",
    }
    assert expected <= families


async def test_status_reports_counts_queue_and_resources(database_url: str, tmp_path: Path) -> None:
    async with custom_app(database_url, tmp_path, worker_enabled=False) as app:
        async with asgi_client(app) as client:
            admin, user = await _admin_and_user(app, client)
            session = await new_session(client, user)
            await client.post(
                f"/v1/sessions/{session['id']}/messages",
                json={"role": "user", "content": "hello"},
                headers=user.headers,
            )
            await create_job(client, user, "llm.complete", {"prompt": "hi", "runner": "echo"})
            status = (await client.get("/v1/monitoring/status", headers=admin.headers)).json()
    assert status["counts"] == {
        "users": 2,
        "projects": 0,
        "agents": 0,
        "sessions": 1,
        "messages": 1,
        "jobs": 1,
    }
    snapshot = status["snapshot"]
    assert snapshot["queue"]["depth"] == 1
    assert snapshot["queue"]["running"] == 0
    assert snapshot["active_sessions"] == 1
    assert snapshot["uptime_seconds"] > 0
    assert 0 <= snapshot["resources"]["cpu_percent"] <= 100
    assert snapshot["resources"]["process_rss_bytes"] > 0
    assert status["workers"] == []


async def test_performance_gives_percentiles_per_route(
    client: httpx.AsyncClient, admin: Account
) -> None:
    for _ in range(20):
        assert (await client.get("/v1/sessions", headers=admin.headers)).status_code == 200
    report = (await client.get("/v1/monitoring/performance", headers=admin.headers)).json()
    rows = {(r["method"], r["route"]): r["figures"] for r in report["routes"]}
    sessions = rows[("GET", "/v1/sessions")]
    assert sessions["count"] == 20
    assert sessions["errors"] == 0
    assert 0 < sessions["p50_ms"] <= sessions["p95_ms"] <= sessions["p99_ms"]
    assert sessions["per_second"] == 20 / report["window_seconds"]
    assert report["totals"]["count"] >= 20


async def test_database_report(client: httpx.AsyncClient, admin: Account) -> None:
    report = (await client.get("/v1/monitoring/database", headers=admin.headers)).json()
    assert report["dialect"] in ("sqlite", "postgresql")
    assert report["pool"]["size"] >= 1
    assert report["pool"]["checked_out"] >= 1  # this request's own connection
    assert report["ping_ms"] > 0
    assert report["queries"]["count"] > 0
    assert report["queries"]["p50_ms"] <= report["queries"]["p99_ms"] <= report["queries"]["max_ms"]


async def test_an_error_burst_fires_the_error_rate_alert(
    app: FastAPI, client: httpx.AsyncClient, admin: Account
) -> None:
    async def broken() -> None:
        raise RuntimeError("synthetic failure")

    app.add_api_route("/v1/synthetic-failure", broken)
    assert await _alert_names(client, admin) == set()
    for _ in range(10):  # 10 per minute > 0.1/s
        assert_problem(await client.get("/v1/synthetic-failure"), 500)
    alerts = (await client.get("/v1/monitoring/alerts", headers=admin.headers)).json()["data"]
    fired = {a["name"]: a for a in alerts if a["name"] not in MACHINE_ALERTS}
    assert set(fired) == {"HighErrorRate"}
    alert = fired["HighErrorRate"]
    assert alert["value"] > alert["threshold"] == 0.1
    assert alert["severity"] == "critical"
    since = assert_iso_utc(alert["since"])
    again = (await client.get("/v1/monitoring/alerts", headers=admin.headers)).json()["data"]
    refired = next(a for a in again if a["name"] == "HighErrorRate")
    assert assert_iso_utc(refired["since"]) == since  # still the same firing
    errors = await samples(client, "http_requests_total")
    assert value(errors, method="GET", route="/v1/synthetic-failure", status="500") >= 10


async def test_a_waiting_queue_fires_its_alert_and_degrades_health(
    database_url: str, tmp_path: Path
) -> None:
    async with custom_app(
        database_url, tmp_path, worker_enabled=False, alert_queue_age_seconds=0
    ) as app:
        async with asgi_client(app) as client:
            admin, user = await _admin_and_user(app, client)
            health = (await client.get("/v1/health")).json()
            assert health["status"] == "degraded"
            assert health["components"]["workers"]["status"] == "degraded"
            assert health["components"]["database"]["status"] == "ok"
            assert (await client.get("/v1/health/ready")).status_code == 200
            await create_job(client, user, "llm.complete", {"prompt": "hi", "runner": "echo"})
            names = await _alert_names(client, admin)
            depth = await samples(client, "job_queue_depth")
    assert "JobQueueStalled" in names
    assert value(depth) == 1


async def test_health_reports_every_component(client: httpx.AsyncClient, admin: Account) -> None:
    await wait_for_worker(client)
    health = (await client.get("/v1/health")).json()
    components = health["components"]
    assert {"database", "broker", "runners", "workers"} <= set(components)
    for check in components.values():
        assert check["latency_ms"] >= 0
    assert components["database"]["status"] == "ok"
    assert components["broker"]["status"] == "ok"
    assert components["runners"] == {**components["runners"], "status": "ok", "detail": "echo"}
    assert components["workers"]["status"] == "ok"
    assert components["cache"] == {**components["cache"], "status": "ok", "detail": "memory"}


async def test_jobs_and_tokens_are_counted(client: httpx.AsyncClient, account: Account) -> None:
    before_jobs = await samples(client, "jobs_total")
    before_tokens = await samples(client, "token_usage_total")
    job = await create_job(
        client, account, "llm.complete", {"prompt": "count me", "runner": "echo"}
    )
    done = await wait_job(client, account, job["id"])
    assert done["status"] == "completed"
    completed = {"kind": "llm.complete", "status": "completed"}
    # The worker counts the attempt once its completion has committed: a poll may see the
    # job completed a moment before.
    for _ in range(100):
        jobs = await samples(client, "jobs_total")
        if value(jobs, **completed) != value(before_jobs, **completed):
            break
        await asyncio.sleep(0.02)
    tokens = await samples(client, "token_usage_total")
    model = done["result"]["model"] or "echo"
    usage = done["result"]["usage"]
    assert value(jobs, **completed) - value(before_jobs, **completed) == 1
    for direction, used in (("prompt", "prompt_tokens"), ("completion", "completion_tokens")):
        labels = {"model": model, "direction": direction}
        assert value(tokens, **labels) - value(before_tokens, **labels) == usage[used] > 0


async def wait_for_worker(client: httpx.AsyncClient) -> None:
    """The in-process worker lists itself within its first heartbeat."""
    for _ in range(50):
        health = (await client.get("/v1/health")).json()
        if health["components"]["workers"]["status"] == "ok":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no worker heartbeat: {health}")


async def _alert_names(client: httpx.AsyncClient, admin: Account) -> set[str]:
    """The firing alerts, except the machine's (other work shares the test machine)."""
    response = await client.get("/v1/monitoring/alerts", headers=admin.headers)
    assert response.status_code == 200
    return {a["name"] for a in response.json()["data"] if a["name"] not in MACHINE_ALERTS}


async def _admin_and_user(app: FastAPI, client: httpx.AsyncClient) -> tuple[Account, Account]:
    admin = await login_admin(app, client)
    return admin, await register(client, f"user-{secrets.token_hex(4)}@example.com")
