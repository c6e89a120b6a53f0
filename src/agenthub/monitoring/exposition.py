"""`/metrics`: the text format, correct when several server processes share a port.

`agenthub serve --workers N` sets `PROMETHEUS_MULTIPROC_DIR` before the processes start, so
every counter and histogram is written to a per-process file and `/metrics` sums them
(`prometheus_client.multiprocess`). Values that describe the deployment rather than a process
(queue depth, active sessions, system CPU and memory) are read when scraped
(`monitoring.monitor`) and added by a collector (`GaugeSource`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROCESS_ENV))


class GaugeSource(Collector):
    """Adds gauges whose values are read at scrape time: `values()` yields
    (name, documentation, value) triples."""

    def __init__(self, values: Iterable[tuple[str, str, float]] = ()) -> None:
        self._values = list(values)

    def update(self, values: Iterable[tuple[str, str, float]]) -> None:
        self._values = list(values)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, documentation, value in self._values:
            yield GaugeMetricFamily(name, documentation, value=value)


def exposition(gauges: GaugeSource) -> bytes:
    """The text format of every metric of this deployment's processes plus `gauges`."""
    if multiprocess_enabled():
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)  # type: ignore[no-untyped-call]
    else:
        processes = REGISTRY
    scraped = CollectorRegistry()
    scraped.register(gauges)
    return generate_latest(processes) + generate_latest(scraped)


def mark_process_dead() -> None:
    """Drop this process's live gauges from the multiprocess files (at shutdown)."""
    if multiprocess_enabled():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


__all__ = ["CONTENT_TYPE_LATEST", "exposition", "mark_process_dead"]
