"""`/metrics` of `agenthub serve --workers 2` counts the requests of both processes, whichever
process answers the scrape; the private multiprocess directory goes away with the server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agenthub.cli import multiprocess_metrics
from agenthub.monitoring.exposition import MULTIPROCESS_ENV
from conftest import TEST_SECRET
from jobs.worker_support import redis_prefix
from monitoring.deploy_support import poll
from processes import clean_env, run, server_process
from support import PASSWORD

ROUTE = "/v1/monitoring/status"
REQUESTS = 40


def requests_counted(base: str) -> tuple[float, float]:
    """`http_requests_total` and the latency histogram's count for GET `ROUTE` with 200, from
    one scrape over a fresh connection."""
    text = httpx.get(f"{base}/metrics", timeout=10).text
    wanted = {"method": "GET", "route": ROUTE}
    total = count = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if wanted.items() <= sample.labels.items():
                if sample.name == "http_requests_total" and sample.labels["status"] == "200":
                    total += sample.value
                elif sample.name == "http_request_duration_seconds_count":
                    count += sample.value
    return total, count


@pytest.fixture
def redis() -> Iterator[dict[str, str]]:
    """Several server processes share their events through Redis."""
    with redis_prefix() as settings:
        yield settings


@pytest.mark.slow
def test_metrics_sum_every_server_process(tmp_path: Path, redis: dict[str, str]) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = clean_env(
        AGENTHUB_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'agenthub.db'}",
        AGENTHUB_SECRET_KEY=TEST_SECRET,
        AGENTHUB_LOG_LEVEL="WARNING",
        AGENTHUB_FILES_DIR=str(tmp_path / "files"),
        TMPDIR=str(temp),
        **redis,
    )
    env.pop(MULTIPROCESS_ENV, None)
    email = "ops@example.com"
    created = run(
        ["user", "create", "--email", email, "--password", PASSWORD, "--admin"], tmp_path, env
    )
    assert created.returncode == 0, created.stderr

    with server_process(tmp_path, env, "--workers", "2", "--no-worker") as server:
        [directory] = temp.glob("agenthub-metrics-*")
        login = httpx.post(
            f"{server.http}/v1/auth/login", json={"email": email, "password": PASSWORD}
        )
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

        def pid() -> int:
            """One request over a fresh connection: the pid of the process that served it."""
            response = httpx.get(f"{server.http}{ROUTE}", headers=headers, timeout=10)
            assert response.status_code == 200, response.text
            served_by: int = response.json()["snapshot"]["pid"]
            return served_by

        served: list[int] = []

        def both_serving() -> bool | None:
            served.append(pid())
            return True if len(set(served)) == 2 else None

        # The second process may start accepting a moment after the first.
        poll(both_serving, 20, "both processes to serve")
        with ThreadPoolExecutor(max_workers=4) as pool:
            served += pool.map(lambda _: pid(), range(REQUESTS))

        assert len(set(served)) == 2
        assert any(directory.glob("counter_*.db"))
        scrapes = {requests_counted(server.http) for _ in range(6)}
        assert scrapes == {(len(served), len(served))}

    assert server.proc.returncode == 0, server.log.read_text()
    assert not directory.exists()
    assert list(temp.iterdir()) == []


def test_one_process_needs_no_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    with multiprocess_metrics(1):
        assert MULTIPROCESS_ENV not in os.environ


def test_several_processes_get_a_private_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROCESS_ENV, raising=False)
    with multiprocess_metrics(3):
        directory = Path(os.environ[MULTIPROCESS_ENV])
        assert directory.is_dir() and not any(directory.iterdir())
        (directory / "counter_1.db").write_bytes(b"")
    assert MULTIPROCESS_ENV not in os.environ
    assert not directory.exists()


def test_the_operators_directory_is_used_and_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(MULTIPROCESS_ENV, str(tmp_path))
    with multiprocess_metrics(4):
        assert os.environ[MULTIPROCESS_ENV] == str(tmp_path)
    assert os.environ[MULTIPROCESS_ENV] == str(tmp_path)
    assert tmp_path.is_dir()
