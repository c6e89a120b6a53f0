"""Start-up imports what the command needs and no more: the CLI's help none of the server's
stack, and a server on a migrated database neither Alembic nor the clients of services it is
not configured for (the OpenAI SDK, Redis). Those imports took most of the start-up time.

Each check runs the real command in a child process that writes the names of the modules it
imported when it exits; no duration is asserted (`bench/startup.py` measures them).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from processes import clean_env, free_port, run

# The `agenthub` command, writing `sys.modules` to the file named by its first argument at exit
# (after `--help`, and after SIGTERM has stopped `serve`).
RECORDING_AGENTHUB = """
import atexit, sys
from pathlib import Path

record = Path(sys.argv.pop(1))
atexit.register(lambda: record.write_text("\\n".join(sorted(sys.modules))))
sys.argv[0] = "agenthub"
from agenthub.cli import app

app()
"""
SERVER_STACK = {"fastapi", "starlette", "sqlalchemy", "uvicorn", "structlog", "httpx", "psutil"}
NOT_CONFIGURED = {"alembic", "openai", "redis"}


def _packages(record: Path) -> set[str]:
    return {name.partition(".")[0] for name in record.read_text().split()}


@pytest.mark.parametrize(
    "args", [["--help"], ["serve", "--help"], ["user", "create", "--help"]], ids=" ".join
)
def test_help_imports_none_of_the_server(tmp_path: Path, args: list[str]) -> None:
    record = tmp_path / "modules"
    done = subprocess.run(
        [sys.executable, "-c", RECORDING_AGENTHUB, str(record), *args],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    imported = _packages(record)
    assert "typer" in imported
    assert imported & (SERVER_STACK | NOT_CONFIGURED) == set()


@pytest.mark.slow
def test_serving_a_migrated_database_imports_no_unused_client(tmp_path: Path) -> None:
    env = clean_env()
    migrated = run(["migrate"], tmp_path, env)
    assert migrated.returncode == 0, migrated.stderr
    record, log, port = tmp_path / "modules", tmp_path / "serve.log", free_port()
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", RECORDING_AGENTHUB, str(record), "serve", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=sink,
            stderr=sink,
        )
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v1/health/ready", proc, log)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0, log.read_text()
    imported = _packages(record)
    assert {"agenthub", "fastapi", "sqlalchemy", "uvicorn"} <= imported
    assert imported & NOT_CONFIGURED == set()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until `url` answers 200: the readiness probe has read the schema's revision."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not ready: {log.read_text()}")
