"""The shipped `deploy/` files, read as Prometheus and Grafana read them, and a private
Prometheus server (import as `from monitoring.deploy_support import ...`)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from private_servers import unavailable
from processes import free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DASHBOARD = DEPLOY / "grafana" / "agenthub-dashboard.json"
PROMETHEUS_DIR = DEPLOY / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yml"
ENV_EXAMPLES = sorted((DEPLOY / "env").glob("*.env"))

# What Grafana substitutes before a query reaches Prometheus.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
# Label lists and ranges, removed before reading metric names off an expression.
_NOT_NAMES = re.compile(
    r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]|\b(?:by|without|on|ignoring)\s*\([^)]*\)'
)
_IDENTIFIER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}

T = TypeVar("T")


def require_binary(name: str) -> str:
    """The path of an installed program; skips the test without it (fails it in CI)."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"`{name}` is not installed (Debian package `prometheus`)")
    assert path is not None
    return path


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with Grafana's variables substituted."""
    queries = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            queries.append((panel["title"], expr))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, labels or keywords)."""
    bare = _NOT_NAMES.sub(" ", expr)
    return {name for name in _IDENTIFIER.findall(bare) if name.lower() not in _KEYWORDS}


def exposed_names(exposition: str) -> set[str]:
    """Every sample name an exposition can carry, also for labelled metrics with no child yet."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
    }
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def poll(produce: Callable[[], T | None], timeout: float, what: str) -> T:
    """The first non-None value of `produce()`, tried every 0.2 s for `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = produce()
        if value is not None:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@dataclass
class Prometheus:
    """A running Prometheus server and its HTTP API."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        body = response.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector `promql` evaluates to now (asserts it is valid PromQL)."""
        data = self.api("query", query=promql)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" else []
        return result


@contextmanager
def prometheus_server(workdir: Path, jobs: dict[str, str]) -> Iterator[Prometheus]:
    """`prometheus` scraping each `jobs` target (name → host:port) every second, with the
    shipped alert rules loaded and evaluated every second; killed afterwards."""
    binary = require_binary("prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(ALERTS)],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": [target]}]}
            for name, target in jobs.items()
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            cwd=workdir,
            stdout=sink,
            stderr=sink,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        try:
            poll(lambda: _ready(server), 20, "prometheus to start")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {log.read_text()}") from None
        yield server
    finally:
        proc.kill()
        proc.wait()


def _ready(server: Prometheus) -> bool | None:
    if server.proc.poll() is not None:
        raise AssertionError(f"prometheus exited: {server.log.read_text()}")
    try:
        return httpx.get(f"{server.url}/-/ready", timeout=1).status_code == 200 or None
    except httpx.TransportError:
        return None
