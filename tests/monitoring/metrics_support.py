"""Reading `/metrics` in tests (import as `from monitoring.metrics_support import ...`)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[frozenset[tuple[str, str]], float]


async def samples(client: httpx.AsyncClient, name: str) -> Samples:
    """Every sample of metric `name` in `/metrics`, by its label set."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == name:
                found[frozenset(sample.labels.items())] = sample.value
    return found


def value(found: Samples, **labels: str) -> float:
    return found.get(frozenset(labels.items()), 0.0)
