"""The `agenthub` command as an operator uses it: real processes in an empty directory."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobs.worker_support import redis_prefix
from processes import clean_env, run, serve
from support import PASSWORD


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
    with redis_prefix() as redis:  # several processes share their events through Redis
        env = clean_env(**redis)
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
