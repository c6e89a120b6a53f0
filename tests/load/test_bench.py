"""`agenthub bench` as an operator runs it: a real process against a real `agenthub serve`
(SQLite, in-process broker and worker)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agenthub.load.scenario import Operation
from processes import Server, clean_env, free_port, run, server_process
from support import PASSWORD

pytestmark = pytest.mark.slow

LOAD_LIMITS = {
    "AGENTHUB_RATE_LIMIT_IP": "1000000/minute",
    "AGENTHUB_RATE_LIMIT_USER": "1000000/minute",
    "AGENTHUB_LOGIN_LIMIT_IP": "100000/minute",
    "AGENTHUB_LOGIN_LIMIT_ACCOUNT": "100000/minute",
    "AGENTHUB_WS_CONNECT_LIMIT": "100000/minute",
}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An embedded server with the limits raised, as a load test needs."""
    with server_process(tmp_path_factory.mktemp("bench"), clean_env(**LOAD_LIMITS)) as server:
        yield server


def test_bench_runs_the_mix_without_errors_and_receives_every_event(
    embedded: Server, tmp_path: Path
) -> None:
    done = run(
        ["bench", "--url", embedded.http, "--duration", "3", "--users", "3", "--json"],
        tmp_path,
        clean_env(),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["operations"]) == {op.value for op in Operation}
    for name, figures in result["operations"].items():
        assert figures["count"] > 0, name
        assert figures["errors"] == {}, name
        assert figures["throughput"] > 0, name
        assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"], name
    assert result["total"]["count"] == sum(f["count"] for f in result["operations"].values())
    assert result["total"]["errors"] == {}
    ws = result["websocket"]
    assert ws["subscribers"] == ws["connected"] == 3
    assert ws["expected"] == ws["received"] == result["operations"]["post_message"]["count"]
    assert ws["lost"] == ws["duplicates"] == 0
    assert ws["errors"] == {}
    assert ws["delivery_p50_ms"] is not None
    assert result["failed"] is False


def test_bench_prints_tables_and_stops_after_the_requests_asked_for(
    embedded: Server, tmp_path: Path
) -> None:
    """Also with the users spread over two URLs (here the same server under two names)."""
    other = f"http://localhost:{embedded.port}"
    done = run(
        ["bench", "--url", embedded.http, "--url", other, "--requests", "60", "--users", "2"],
        tmp_path,
        clean_env(),
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│" in line}
    assert {op.value for op in Operation} | {"total"} <= rows.keys()
    assert rows["total"].split("│")[2].strip() == "60"
    assert "message.created" in done.stdout


def test_an_unreachable_url_is_a_clear_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = run(["bench", "--url", url, "--duration", "1", "--json"], tmp_path, clean_env())
    assert done.returncode == 2
    assert f"cannot reach {url}" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_rate_limited_requests_are_errors_with_advice(tmp_path: Path) -> None:
    """Logins beyond the server's per-IP login limit: 429s, exit status 1, and the names of
    the settings to raise."""
    env = clean_env(AGENTHUB_LOGIN_LIMIT_IP="2/minute")
    with server_process(tmp_path, env) as server:
        email = "bench-owner@example.com"
        created = httpx.post(
            f"{server.http}/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        args = ["bench", "--url", server.http, "--users", "3", "--duration", "1", "--json"]
        done = run([*args, "--email", email, "--password", PASSWORD], tmp_path, clean_env())
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["operations"]["login"]["errors"]["429"] > 0
    assert result["operations"]["post_message"]["count"] > 0  # the two logged-in users went on
    assert result["failed"] is True
    assert "AGENTHUB_RATE_LIMIT_IP" in done.stderr
    assert "AGENTHUB_LOGIN_LIMIT_IP" in done.stderr


def test_logins_deferred_with_retry_after_are_tried_again_not_errors(tmp_path: Path) -> None:
    """A server whose password hasher takes one sign-in at a time answers the others 503 with
    `Retry-After`; the virtual users wait as asked and sign in after it, and the run is clean."""
    env = clean_env(
        **LOAD_LIMITS,
        AGENTHUB_PASSWORD_TIME_COST="2",
        AGENTHUB_PASSWORD_MEMORY_KIB="32768",
        AGENTHUB_PASSWORD_HASH_THREADS="1",
        AGENTHUB_PASSWORD_HASH_QUEUE="0",
    )
    with server_process(tmp_path, env) as server:
        email = "bench-owner@example.com"
        created = httpx.post(
            f"{server.http}/v1/auth/register", json={"email": email, "password": PASSWORD}
        )
        assert created.status_code == 201, created.text
        args = ["bench", "--url", server.http, "--users", "6", "--duration", "4", "--json"]
        done = run([*args, "--email", email, "--password", PASSWORD], tmp_path, clean_env())
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    login = result["operations"]["login"]
    assert login["deferred"] > 0
    assert login["count"] > login["deferred"]  # and then signed in
    assert result["total"]["errors"] == {}
    assert result["operations"]["post_message"]["count"] > 0
    assert result["failed"] is False
