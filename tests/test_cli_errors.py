"""What the `agenthub` command says when it cannot work as configured: a few lines naming the
setting or the place and what to do, an exit status, never a traceback. Real processes."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Iterator
from itertools import pairwise
from pathlib import Path

import httpx
import pytest
from alembic.script import ScriptDirectory

from agenthub.db import migrate
from conftest import fresh_postgres
from processes import clean_env, free_port, run, server_process
from realtime_support import redis_url
from support import PASSWORD

MIGRATE_HINT = "run `agenthub migrate`"
DEPLOY_ENV = Path(__file__).resolve().parents[1] / "deploy" / "env"


def told(result: subprocess.CompletedProcess[str], code: int) -> list[str]:
    """The lines the command wrote on stderr, after checking they are a short explanation
    ending in exit status `code`."""
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    assert 1 <= len(lines) <= 3, result.stderr
    return lines


@pytest.fixture
def empty_postgres() -> Iterator[str]:
    """A new PostgreSQL database without any schema."""
    with fresh_postgres("agenthub_cli") as url:
        yield url


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("AGENTHUB_PORT", "abc", "AGENTHUB_PORT: expected an integer, got 'abc'"),
        ("AGENTHUB_COOKIE_SECURE", "maybe", "AGENTHUB_COOKIE_SECURE: expected true or false"),
        ("AGENTHUB_JOB_POLL_SECONDS", "often", "AGENTHUB_JOB_POLL_SECONDS: expected a number"),
        ("AGENTHUB_MAX_UPLOAD_FILES", "0", "AGENTHUB_MAX_UPLOAD_FILES: expected a number >= 1"),
        (
            "AGENTHUB_LOG_FORMAT",
            "xml",
            "AGENTHUB_LOG_FORMAT: expected one of 'auto', 'json' or 'console', got 'xml'",
        ),
        (
            "AGENTHUB_RATE_LIMIT_USER",
            "plenty",
            "AGENTHUB_RATE_LIMIT_USER: 'plenty' is not a rate limit such as '100/minute'",
        ),
    ],
)
def test_a_bad_value_names_the_variable_and_the_expected_form(
    tmp_path: Path, name: str, value: str, error: str
) -> None:
    result = run(["serve"], tmp_path, clean_env(**{name: value}))
    [line] = told(result, 2)
    assert line.startswith(f"error: {error}")


def test_an_unsupported_database_url_gives_the_forms_to_use(tmp_path: Path) -> None:
    env = clean_env(AGENTHUB_DATABASE_URL="mysql://app:dbpassword@db.internal/agenthub")
    [line] = told(run(["migrate"], tmp_path, env), 2)
    assert line.startswith("error: AGENTHUB_DATABASE_URL: ")
    assert "postgresql+asyncpg://" in line and "sqlite+aiosqlite://" in line
    assert "dbpassword" not in line


def test_postgres_and_plain_sqlite_urls_get_the_drivers(
    tmp_path: Path, empty_postgres: str
) -> None:
    """`postgres://` and `postgresql://` as hosting providers give them (libpq's `sslmode`
    too), and `sqlite:///file`."""
    plain = empty_postgres.replace("postgresql+asyncpg://", "postgresql://")
    for url in (f"{plain}?sslmode=disable", plain.replace("postgresql://", "postgres://")):
        env = clean_env(AGENTHUB_DATABASE_URL=url)
        result = run(["migrate"], tmp_path, env)
        assert result.returncode == 0, result.stderr
        shown = run(["config"], tmp_path, env)
        assert '"database_url": "postgresql+asyncpg://' in shown.stdout
    env = clean_env(AGENTHUB_DATABASE_URL=f"sqlite:///{tmp_path / 'plain.db'}")
    created = run(
        ["user", "create", "--email", "a@example.com", "--password", PASSWORD], tmp_path, env
    )
    assert created.returncode == 0, created.stderr
    assert (tmp_path / "plain.db").exists()


def test_an_unknown_variable_is_warned_about_with_the_closest_name(tmp_path: Path) -> None:
    env = clean_env(AGENTHUB_PROT="9000", AGENTHUB_NOTHING_LIKE_THIS="1")
    with server_process(tmp_path, env) as server:
        log = server.log.read_text()
    assert "warning: AGENTHUB_PROT is not an agenthub setting; did you mean AGENTHUB_PORT?" in log
    assert "warning: AGENTHUB_NOTHING_LIKE_THIS is not an agenthub setting" in log
    shown = run(["config"], tmp_path, env)
    assert shown.returncode == 0 and '"port": 8000' in shown.stdout
    assert "did you mean AGENTHUB_PORT?" in shown.stderr


def shipped_secrets() -> list[str]:
    """Every `AGENTHUB_SECRET_KEY` value the example env files ship, commented out or not."""
    found = {
        match.group(1)
        for path in DEPLOY_ENV.glob("*.env")
        for match in re.finditer(r"^#?\s*AGENTHUB_SECRET_KEY=(\S+)$", path.read_text(), re.M)
    }
    assert found, "the examples show no AGENTHUB_SECRET_KEY"
    return sorted(found)


@pytest.mark.parametrize("secret", ["s3cr3", "x" * 31, *shipped_secrets()])
@pytest.mark.parametrize("command", ["serve", "worker", "token"])
def test_production_refuses_a_short_or_placeholder_secret(
    tmp_path: Path, command: str, secret: str
) -> None:
    """Every command that signs or checks tokens (or runs beside processes that do) stops
    with one line naming the variable, and never shows the value."""
    env = clean_env(
        AGENTHUB_ENVIRONMENT="production",
        AGENTHUB_SECRET_KEY=secret,
        AGENTHUB_REDIS_URL=redis_url(),  # not reached: the settings stop the worker before
    )
    args = [command, "--email", "ops@example.com"] if command == "token" else [command]
    [line] = told(run(args, tmp_path, env), 2)
    assert line.startswith("error: AGENTHUB_SECRET_KEY: the signing secret "), line
    assert "refused in production" in line and "32 bytes" in line
    assert secret not in line


def test_a_weak_secret_is_fine_outside_production_and_a_strong_one_in_it(
    tmp_path: Path,
) -> None:
    for environment, secret in [
        ("development", "s3cr3"),
        ("test", "change-me-to-a-long-random-string"),
        ("production", "0123456789abcdef" * 2),  # 32 bytes
    ]:
        env = clean_env(AGENTHUB_ENVIRONMENT=environment, AGENTHUB_SECRET_KEY=secret)
        result = run(["config"], tmp_path, env)
        assert result.returncode == 0, result.stderr
        assert f'"environment": "{environment}"' in result.stdout


# --- the database ---------------------------------------------------------------------------

COMMANDS = {
    "migrate": ["migrate"],
    "migrate --down": ["migrate", "--down"],
    "user create": ["user", "create", "--email", "ops@example.com", "--password", PASSWORD],
    "token": ["token", "--email", "ops@example.com"],
    "serve": ["serve"],
    "worker": ["worker"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unreachable_database_is_named_with_the_cause(tmp_path: Path, command: str) -> None:
    port = free_port()
    env = clean_env(
        AGENTHUB_DATABASE_URL=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/agenthub",
        AGENTHUB_AUTO_MIGRATE="true",  # serve and worker reach the database at start-up
        AGENTHUB_REDIS_URL=redis_url(),  # not reached: the worker stops before
    )
    error, todo = told(run(COMMANDS[command], tmp_path, env), 1)
    assert error == f"error: cannot connect to PostgreSQL at 127.0.0.1:{port}: connection refused"
    assert "AGENTHUB_DATABASE_URL" in todo


def test_an_unresolvable_host_and_a_missing_directory_are_named(tmp_path: Path) -> None:
    env = clean_env(AGENTHUB_DATABASE_URL="postgres://postgres@db.invalid/agenthub")
    error, _ = told(run(["migrate"], tmp_path, env), 1)
    assert error == (
        "error: cannot connect to PostgreSQL at db.invalid:5432: "
        "the host name 'db.invalid' does not resolve"
    )
    missing = tmp_path / "no" / "such"
    env = clean_env(AGENTHUB_DATABASE_URL=f"sqlite+aiosqlite:///{missing / 'agenthub.db'}")
    error, todo = told(run(["serve"], tmp_path, env), 1)
    assert f"the directory {missing} does not exist" in error
    assert "create the directory" in todo


def test_an_unmigrated_database_says_to_migrate(tmp_path: Path, empty_postgres: str) -> None:
    env = clean_env(AGENTHUB_DATABASE_URL=empty_postgres)
    command = COMMANDS["user create"]
    error, todo = told(run(command, tmp_path, env), 1)
    assert "has no agenthub schema" in error
    assert todo.strip() == MIGRATE_HINT


def test_migrate_says_what_it_did(tmp_path: Path) -> None:
    env = clean_env(
        AGENTHUB_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}",
        AGENTHUB_LOG_LEVEL="WARNING",  # without Alembic's progress lines
    )
    head = migrate.head_revision()
    assert head is not None
    script = ScriptDirectory(str(migrate.MIGRATIONS_DIR)).get_revision(head)
    assert script is not None and isinstance(script.down_revision, str)
    before_head = script.down_revision

    def said(*args: str) -> str:
        result = run(["migrate", *args], tmp_path, env)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert said() == f"migrated no schema → {migrate.label(head)}"
    assert said() == f"database already at {migrate.label(head)}"
    assert said("--down") == f"reverted {migrate.label(head)} → {migrate.label(before_head)}"
    assert said("base", "--down") == f"reverted {migrate.label(before_head)} → no schema"
    assert said("--down") == "nothing to revert: the database has no schema"
    [line] = told(run(["migrate", "0999"], tmp_path, env), 2)
    assert "0999" in line


def test_migrate_logs_its_steps_not_alembic_plugins(tmp_path: Path) -> None:
    env = clean_env(AGENTHUB_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    result = run(["migrate"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert "Running upgrade" in result.stderr
    assert "setup plugin" not in result.stderr


def test_serve_on_an_unmigrated_postgres_says_once_to_migrate(
    tmp_path: Path, empty_postgres: str
) -> None:
    env = clean_env(
        AGENTHUB_DATABASE_URL=empty_postgres,
        AGENTHUB_AUTO_MIGRATE="false",
        AGENTHUB_JOB_POLL_SECONDS="0.1",
    )
    with server_process(tmp_path, env) as server:
        ready = httpx.get(f"{server.http}/v1/health/ready")
        assert ready.status_code == 503 and MIGRATE_HINT in ready.json()["detail"]
        _wait_for(lambda: MIGRATE_HINT in server.log.read_text(), "the worker's warning")
        time.sleep(1)  # ten polls of the worker
        log = server.log.read_text()
        assert log.count(MIGRATE_HINT) == 1, log
        assert "claim_failed" not in log

        assert run(["migrate"], tmp_path, env).returncode == 0
        _wait_for(lambda: "database_ready" in server.log.read_text(), "the worker to start")
        assert httpx.get(f"{server.http}/v1/health/ready").status_code == 200
        workers = httpx.get(f"{server.http}/v1/health").json()["components"]["workers"]
        assert workers["status"] == "ok", workers


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited in vain for {what}"
        time.sleep(0.1)


# --- deployments that cannot work -----------------------------------------------------------


def test_a_worker_without_redis_is_refused(tmp_path: Path) -> None:
    """Its job events and heartbeat would stay in its own process: API clients would never
    hear of its jobs, and the API would report no live worker."""
    lines = told(run(["worker"], tmp_path, clean_env()), 2)
    assert lines[0].startswith("error: agenthub worker needs AGENTHUB_REDIS_URL")
    assert "agenthub serve" in lines[-1]


def test_serve_with_several_processes_without_redis_is_refused(tmp_path: Path) -> None:
    """Each process would keep its own realtime events and worker list."""
    lines = told(run(["serve", "--workers", "2"], tmp_path, clean_env()), 2)
    assert lines[0].startswith("error: --workers 2 needs AGENTHUB_REDIS_URL")
    assert "one process" in lines[-1]


# --- help -----------------------------------------------------------------------------------

COLUMNS = 80
WRAP = COLUMNS - 2  # click's text width
SUBCOMMANDS = ["serve", "worker", "migrate", "config", "token", "bench", "user", "user create"]


@pytest.mark.parametrize("command", ["", *SUBCOMMANDS])
def test_help_renders_cleanly(tmp_path: Path, command: str) -> None:
    """No type placeholders such as `<bool>`, and every paragraph filled to the width: a
    line that ends early is a docstring's line break showing."""
    env = clean_env(COLUMNS=str(COLUMNS))
    result = run([*command.split(), "--help"], tmp_path, env)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert not re.search(r"<[a-z][^>]*>", text), text
    assert max(len(line) for line in text.splitlines()) <= WRAP, text
    description = text.split("\n\n")[1:]
    for paragraph in description:
        if re.match(r"^[A-Z][a-z]+:$", paragraph.splitlines()[0]):
            break  # Options:, Arguments:, Commands:
        lines = paragraph.splitlines()
        for line, following in pairwise(lines):
            assert len(line) + 1 + len(following.split()[0]) > WRAP, paragraph
    if "Commands:" in text:
        listed = text.split("Commands:\n", 1)[1].splitlines()
        assert all(entry.rstrip().endswith(".") for entry in listed if entry.strip()), text
        assert not any(entry.endswith("...") for entry in listed), text
