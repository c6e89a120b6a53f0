"""The files under `deploy/`, checked by the tools that consume them: promtool for the rules
and the Prometheus configuration, a JSON schema of the Grafana dashboard fields, the metrics
a live app exposes, and the settings agenthub knows."""

from __future__ import annotations

import re
import secrets
import subprocess
from itertools import combinations
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest

from agenthub.config import Settings
from agenthub.monitoring.alerts import rules
from monitoring.deploy_support import (
    ALERTS,
    DASHBOARD,
    ENV_EXAMPLES,
    PROMETHEUS_DIR,
    REPO,
    alert_rules,
    dashboard,
    dashboard_queries,
    exposed_names,
    metric_names,
    require_binary,
)
from support import Account

DATASOURCE = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"const": "${datasource}"}},
}
# The Grafana dashboard fields agenthub's dashboard uses, as Grafana (schemaVersion 39) reads them.
DASHBOARD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "templating", "panels", "time"],
    "properties": {
        "uid": {"const": "agenthub"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "time": {"type": "object", "required": ["from", "to"]},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "contains": {
                        "type": "object",
                        "required": ["name", "type", "query"],
                        "properties": {
                            "name": {"const": "datasource"},
                            "type": {"const": "datasource"},
                            "query": {"const": "prometheus"},
                        },
                    },
                }
            },
        },
        "panels": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/panel"}},
    },
    "$defs": {
        "gridPos": {
            "type": "object",
            "required": ["h", "w", "x", "y"],
            "additionalProperties": False,
            "properties": {
                "h": {"type": "integer", "minimum": 1},
                "w": {"type": "integer", "minimum": 1, "maximum": 24},
                "x": {"type": "integer", "minimum": 0, "maximum": 23},
                "y": {"type": "integer", "minimum": 0},
            },
        },
        "target": {
            "type": "object",
            "required": ["refId", "expr", "datasource"],
            "properties": {
                "refId": {"type": "string", "pattern": "^[A-Z]$"},
                "expr": {"type": "string", "minLength": 1},
                "legendFormat": {"type": "string"},
                "datasource": DATASOURCE,
            },
        },
        "panel": {
            "type": "object",
            "required": ["id", "type", "title", "gridPos"],
            "properties": {
                "id": {"type": "integer", "minimum": 1},
                "type": {"enum": ["row", "stat", "timeseries"]},
                "title": {"type": "string", "minLength": 1},
                "gridPos": {"$ref": "#/$defs/gridPos"},
            },
            "if": {"properties": {"type": {"const": "row"}}},
            "then": {"required": ["panels"], "not": {"required": ["targets"]}},
            "else": {
                "required": ["datasource", "targets", "fieldConfig"],
                "properties": {
                    "datasource": DATASOURCE,
                    "targets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {"$ref": "#/$defs/target"},
                    },
                },
            },
        },
    },
}


def promtool(*args: str) -> str:
    done = subprocess.run(
        [require_binary("promtool"), *args],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def test_promtool_checks_the_alert_rules() -> None:
    assert "SUCCESS: 5 rules found" in promtool("check", "rules", str(ALERTS))


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_promtool_checks_the_example_configuration() -> None:
    output = promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 1 rule files found" in output
    assert "is valid prometheus config file syntax" in output


def test_the_rules_are_the_in_app_rules() -> None:
    """Same names, severities and thresholds as `GET /v1/monitoring/alerts` by default."""
    in_app = {r.name: (r.severity, r.threshold) for r in rules(Settings.model_construct())}
    shipped = {}
    for rule in alert_rules():
        threshold = re.search(r">\s*([0-9.]+)\s*$", rule["expr"])
        assert threshold is not None, rule["expr"]
        shipped[rule["alert"]] = (rule["labels"]["severity"], float(threshold.group(1)))
    assert shipped == in_app


def test_the_dashboard_matches_its_schema() -> None:
    board = dashboard()
    jsonschema_rs.validate(DASHBOARD_SCHEMA, board)
    panels = board["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids))
    boxes = [panel["gridPos"] for panel in panels]
    assert all(box["x"] + box["w"] <= 24 for box in boxes)
    for a, b in combinations(boxes, 2):
        apart = (
            a["x"] + a["w"] <= b["x"]
            or b["x"] + b["w"] <= a["x"]
            or a["y"] + a["h"] <= b["y"]
            or b["y"] + b["h"] <= a["y"]
        )
        assert apart, (a, b)
    for panel in panels:
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]


def test_the_schema_rejects_what_grafana_would_not_draw() -> None:
    board = dashboard()
    panel = next(p for p in board["panels"] if p["type"] == "timeseries")
    del panel["targets"][0]["expr"]
    with pytest.raises(jsonschema_rs.ValidationError):
        jsonschema_rs.validate(DASHBOARD_SCHEMA, board)


def test_the_dashboard_covers_the_spec_metrics() -> None:
    used = set().union(*(metric_names(expr) for _, expr in dashboard_queries()))
    spec = {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "token_usage_total",
        "active_sessions",
        "websocket_connections",
        "websocket_disconnections_total",
        "realtime_events_total",
        "jobs_total",
        "job_duration_seconds_bucket",
        "job_queue_depth",
        "job_queue_oldest_seconds",
        "system_cpu_percent",
        "system_memory_bytes",
        "db_pool_checked_out",
        "db_query_duration_seconds_bucket",
        "rate_limited_total",
    }
    assert spec <= used, spec - used


async def test_every_metric_of_the_dashboard_and_rules_is_exposed(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    exposed = exposed_names(response.text)
    exprs = [expr for _, expr in dashboard_queries()] + [rule["expr"] for rule in alert_rules()]
    used = set().union(*(metric_names(expr) for expr in exprs))
    assert used, exprs
    assert used <= exposed, sorted(used - exposed)


async def test_the_dashboard_route_serves_the_deploy_file(
    client: httpx.AsyncClient, admin: Account
) -> None:
    assert DASHBOARD.is_symlink()
    packaged = REPO / "src" / "agenthub" / "monitoring" / "assets" / "grafana-dashboard.json"
    assert DASHBOARD.resolve() == packaged.resolve()
    response = await client.get("/v1/monitoring/dashboard", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json() == dashboard()


@pytest.mark.parametrize("example", ENV_EXAMPLES, ids=lambda path: path.name)
def test_env_examples_name_only_real_settings(example: Path) -> None:
    text = example.read_text()
    named = re.findall(r"^#?\s*AGENTHUB_([A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert named
    unknown = {name for name in named if name.lower() not in Settings.model_fields}
    assert not unknown, f"{example.name} names settings agenthub does not have: {unknown}"
    # Its values validate, once the secret's placeholder is replaced: production refuses it
    # (tests/test_cli_errors.py).
    Settings(_env_file=example, secret_key=secrets.token_hex(32))
