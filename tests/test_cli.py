"""The `agenthub` command as an operator uses it: real processes in an empty directory."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import PASSWORD

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


def wait_live(base: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
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


def serve(cwd: Path, env: dict[str, str], *extra: str) -> Iterator[str]:
    port = free_port()
    log = cwd / f"serve-{port}.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*AGENTHUB, "serve", "--port", str(port), *extra],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=sink,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_live(base, proc, log)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def server(workdir: Path) -> Iterator[str]:
    yield from serve(workdir, clean_env())


def test_serve_without_configuration_is_usable_at_once(workdir: Path, server: str) -> None:
    secret = workdir / ".agenthub-secret"
    assert (workdir / "agenthub.db").exists()
    assert secret.exists() and stat.S_IMODE(secret.stat().st_mode) == 0o600
    created = httpx.post(
        f"{server}/v1/auth/register", json={"email": "first@example.com", "password": PASSWORD}
    )
    assert created.status_code == 201
    login = httpx.post(
        f"{server}/v1/auth/login", json={"email": "first@example.com", "password": PASSWORD}
    )
    token = login.json()["access_token"]
    profile = httpx.get(f"{server}/v1/user/profile", headers={"Authorization": f"Bearer {token}"})
    assert profile.json()["email"] == "first@example.com"


def test_secret_persists_across_restarts(workdir: Path) -> None:
    env = clean_env()
    for base in serve(workdir, env):
        httpx.post(
            f"{base}/v1/auth/register", json={"email": "a@example.com", "password": PASSWORD}
        )
        token = httpx.post(
            f"{base}/v1/auth/login", json={"email": "a@example.com", "password": PASSWORD}
        ).json()["access_token"]
    for base in serve(workdir, env):
        profile = httpx.get(f"{base}/v1/user/profile", headers={"Authorization": f"Bearer {token}"})
        assert profile.status_code == 200


def test_user_create_and_token_give_an_admin_access(workdir: Path, server: str) -> None:
    env = clean_env()
    created = run(
        ["user", "create", "--email", "ops@example.com", "--password", PASSWORD, "--admin"],
        workdir,
        env,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip().startswith("usr_")
    token = run(["token", "--email", "ops@example.com"], workdir, env)
    assert token.returncode == 0, token.stderr
    audit = httpx.get(
        f"{server}/v1/admin/audit", headers={"Authorization": f"Bearer {token.stdout.strip()}"}
    )
    assert audit.status_code == 200
    assert "admin.user_created" in {e["action"] for e in audit.json()["data"]}
    again = run(
        ["user", "create", "--email", "ops@example.com", "--password", PASSWORD], workdir, env
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr
    unknown = run(["token", "--email", "nobody@example.com"], workdir, env)
    assert unknown.returncode != 0


def test_serve_with_several_workers_and_host_port(workdir: Path) -> None:
    env = clean_env()
    for base in serve(workdir, env, "--host", "127.0.0.1", "--workers", "2"):
        ids = {httpx.get(f"{base}/v1/health/live").headers["X-Request-ID"] for _ in range(5)}
        assert len(ids) == 5


def test_config_masks_secrets(workdir: Path) -> None:
    env = clean_env(
        AGENTHUB_SECRET_KEY="top-secret-value",
        AGENTHUB_DATABASE_URL="postgresql+asyncpg://app:dbpassword@db.internal/agenthub",
        AGENTHUB_CORS_ORIGINS="https://a.example,https://b.example",
    )
    result = run(["config"], workdir, env)
    assert result.returncode == 0, result.stderr
    assert "top-secret-value" not in result.stdout and "dbpassword" not in result.stdout
    shown = json.loads(result.stdout)
    assert shown["cors_origins"] == ["https://a.example", "https://b.example"]
    assert shown["database_url"] == "postgresql+asyncpg://app:***@db.internal/agenthub"


def test_migrate_applies_and_reverts(workdir: Path) -> None:
    env = clean_env(AGENTHUB_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'm.db'}")
    assert run(["migrate"], workdir, env).returncode == 0
    for base in serve(workdir, dict(env, AGENTHUB_AUTO_MIGRATE="false")):
        assert httpx.get(f"{base}/v1/health/ready").status_code == 200
    assert run(["migrate", "base", "--down"], workdir, env).returncode == 0
    for base in serve(workdir, dict(env, AGENTHUB_AUTO_MIGRATE="false")):
        not_ready = httpx.get(f"{base}/v1/health/ready")
        assert not_ready.status_code == 503
        assert not_ready.headers["content-type"] == "application/problem+json"
