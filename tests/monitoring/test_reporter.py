"""`metrics.update` on `system` (the status page's live feed), on a real server of each
deployment: published while an administrator listens on the node, and not otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from conftest import Deployment
from processes import Server
from realtime_support import create_admin, ws_peer
from support import Account, assert_iso_utc

pytestmark = pytest.mark.slow

INTERVAL = 0.2
QUIET = 5 * INTERVAL


@pytest.fixture(scope="module")
def reporting(deployment: Deployment) -> Iterator[Server]:
    with deployment.node(AGENTHUB_STATUS_INTERVAL_SECONDS=str(INTERVAL)) as node:
        yield node


async def system_offset(api: httpx.AsyncClient, admin: Account) -> int:
    """The `system` channel's last offset: it grows with each publication."""
    response = await api.get(
        "/v1/realtime/channels/system/history", params={"limit": 1}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    offset: int = response.json()["offset"]
    return offset


async def test_metrics_updates_flow_while_an_admin_listens(
    reporting: Server, deployment: Deployment
) -> None:
    admin = await create_admin(reporting.http, deployment.workdir, deployment.env)
    async with httpx.AsyncClient(base_url=reporting.http, timeout=10) as api:
        node = (await api.get("/v1/realtime/stats", headers=admin.headers)).json()["node"]
        quiet = await system_offset(api, admin)
        await asyncio.sleep(QUIET)
        assert await system_offset(api, admin) == quiet, "published with nobody listening"

        async with ws_peer(reporting.ws, admin.access_token) as operator:
            await operator.subscribe("system")
            first = await operator.event("system", "metrics.update")
            second = await operator.event("system", "metrics.update")
            assert second["offset"] > first["offset"] > quiet
            assert_iso_utc(first["ts"])

            data = first["data"]
            assert set(data) == {"health", "snapshot", "alerts"}
            health = data["health"]
            assert health["status"] in {"ok", "degraded"}
            assert {"database", "broker", "runners", "workers"} <= set(health["components"])
            assert health["components"]["database"]["status"] == "ok"
            assert health["uptime_seconds"] > 0
            snapshot = data["snapshot"]
            assert snapshot["node"] == node
            assert snapshot["websocket_connections"] >= 1  # the operator's own
            figures = {"count", "per_second", "errors_per_second", "p50_ms", "p95_ms", "p99_ms"}
            assert figures <= set(snapshot["requests"])
            assert {"depth", "running", "oldest_seconds"} <= set(snapshot["queue"])
            assert 0 <= snapshot["resources"]["cpu_percent"] <= 100
            assert isinstance(data["alerts"], list)

            left = await operator.request({"type": "unsubscribe", "channel": "system"})
            assert left["type"] == "unsubscribed", left
            await asyncio.sleep(2 * INTERVAL)  # a sample taken before that may still land
            stopped = await system_offset(api, admin)
            await asyncio.sleep(QUIET)
            assert await system_offset(api, admin) == stopped, "published after the last left"
