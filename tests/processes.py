"""Real `agenthub` processes for tests that need them (CLI, realtime, multi-node)."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

AGENTHUB = [sys.executable, "-m", "agenthub"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without any AGENTHUB_* setting: "no configuration at all"."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTHUB_")}
    env.update({"AGENTHUB_PASSWORD_TIME_COST": "1", "AGENTHUB_PASSWORD_MEMORY_KIB": "1024"})
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTHUB, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def wait_live(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early: {log.read_text()}")
        try:
            if httpx.get(f"{base}/v1/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"server did not start: {log.read_text()}")


@dataclass
class Server:
    """A running `agenthub serve`: its base URLs, process and log file."""

    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/ws"


@contextmanager
def server_process(
    cwd: Path, env: dict[str, str], *extra: str, port: int | None = None
) -> Iterator[Server]:
    """`agenthub serve` on `port` (a free one by default), live before it is yielded,
    terminated (SIGTERM) afterwards."""
    port = port or free_port()
    log = cwd / f"serve-{port}-{secrets.token_hex(2)}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*AGENTHUB, "serve", "--port", str(port), *extra],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=sink,
        )
    server = Server(port, proc, log)
    try:
        wait_live(server.http, proc, log)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def serve(cwd: Path, env: dict[str, str], *extra: str) -> Iterator[str]:
    with server_process(cwd, env, *extra) as server:
        yield server.http
