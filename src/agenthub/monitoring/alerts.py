"""Alerts evaluated from configurable rules over the current snapshot (docs/operations.md).

The same rules ship as Prometheus alerting rules in `deploy/prometheus/alerts.yml` for
deployments that run Prometheus; these are for the ones that do not, and for the status page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from agenthub.config import Settings
from agenthub.db.base import utcnow

if TYPE_CHECKING:
    from agenthub.monitoring.monitor import Snapshot

Severity = Literal["warning", "critical"]


@dataclass(frozen=True)
class Rule:
    name: str
    severity: Severity
    threshold: float
    unit: str
    summary: str
    measure: Callable[[Snapshot], float]


@dataclass(frozen=True)
class Alert:
    name: str
    severity: Severity
    summary: str
    value: float
    threshold: float
    unit: str
    since: datetime


def rules(settings: Settings) -> list[Rule]:
    """The rules with the thresholds of `AGENTHUB_ALERT_*`."""
    return [
        Rule(
            "HighCpu",
            "warning",
            settings.alert_cpu_percent,
            "%",
            "Machine CPU use is high",
            lambda s: s.resources.cpu_percent,
        ),
        Rule(
            "HighMemory",
            "critical",
            settings.alert_memory_percent,
            "%",
            "Machine memory use is high",
            lambda s: s.resources.memory_percent,
        ),
        Rule(
            "HighErrorRate",
            "critical",
            settings.alert_error_rate,
            "5xx/s",
            "Many requests fail with a server error",
            lambda s: s.requests.errors_per_second,
        ),
        Rule(
            "WebSocketDisconnections",
            "warning",
            settings.alert_ws_disconnections_per_minute,
            "/min",
            "Many WebSocket connections are closing",
            lambda s: s.websocket_disconnections_per_minute,
        ),
        Rule(
            "JobQueueStalled",
            "warning",
            settings.alert_queue_age_seconds,
            "s",
            "The oldest due job has waited long",
            lambda s: s.queue.oldest_seconds,
        ),
    ]


class Alerts:
    """Which rules fire now, each with the time it started firing (kept while it fires)."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._since: dict[str, datetime] = {}

    def evaluate(self, snapshot: Snapshot) -> list[Alert]:
        active: list[Alert] = []
        for rule in self.rules:
            value = rule.measure(snapshot)
            if value <= rule.threshold:
                self._since.pop(rule.name, None)
                continue
            since = self._since.setdefault(rule.name, utcnow())
            active.append(
                Alert(
                    name=rule.name,
                    severity=rule.severity,
                    summary=rule.summary,
                    value=round(value, 3),
                    threshold=rule.threshold,
                    unit=rule.unit,
                    since=since,
                )
            )
        return active
