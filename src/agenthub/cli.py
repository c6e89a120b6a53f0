"""The `agenthub` command: serve, worker, migrate, config, user, token, bench.

Each command imports what it runs when it runs, so `agenthub --help` and the other commands
do not wait for the server's imports.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from agenthub.cli_errors import EXIT_FAILED, CommandError, reported, warn
from agenthub.db.diagnosis import reaching

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from agenthub.config import Settings

app = typer.Typer(
    help="agenthub: backend for AI-assistant and AI-agent applications.", rich_markup_mode=None
)
user_app = typer.Typer(help="Manage user accounts.", rich_markup_mode=None)
app.add_typer(user_app, name="user")

SHARE_WITH_REDIS = "set AGENTHUB_REDIS_URL (the same for every process) to share them"


def main() -> None:
    """The `agenthub` command: known failures end in a few lines that say what to do."""
    with reported():
        app()


def _load_settings() -> Settings:
    """The settings, after a warning for each `AGENTHUB_*` variable that sets nothing."""
    from agenthub.config import Settings, unknown_variables

    for message in unknown_variables(os.environ):
        warn(message)
    return Settings()


def _settings() -> Settings:
    from agenthub.core.logging import configure_logging

    settings = _load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _upgrade(settings: Settings) -> None:
    """Bring the schema to the head when the settings say so (by default on SQLite)."""
    from agenthub.db import migrate

    if settings.migrate_on_start:
        with reaching(settings.database_url):
            migrate.upgrade(settings.database_url)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(metavar="HOST", help="Interface to bind [AGENTHUB_HOST]")
    ] = None,
    port: Annotated[
        int | None, typer.Option(metavar="PORT", help="Port to bind [AGENTHUB_PORT]")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, metavar="N", help="Server processes (more than 1 needs AGENTHUB_REDIS_URL)"
        ),
    ] = 1,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Run no jobs here (use `agenthub worker`)")
    ] = False,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            metavar="IP,...",
            help="Proxies whose X-Forwarded-For is believed: addresses, networks or * "
            "(default: none) [AGENTHUB_FORWARDED_ALLOW_IPS]",
        ),
    ] = None,
) -> None:
    """Run the API server.

    SQLite and in-process backends unless configured otherwise; the server also runs jobs
    unless --no-worker is given.
    """
    import uvicorn

    if no_worker:
        os.environ["AGENTHUB_WORKER_ENABLED"] = "false"  # read by each server process
    if forwarded_allow_ips is not None:
        os.environ["AGENTHUB_FORWARDED_ALLOW_IPS"] = forwarded_allow_ips
    settings = _settings()
    if workers > 1 and not settings.redis_url:
        raise CommandError(
            f"--workers {workers} needs AGENTHUB_REDIS_URL: without Redis each process keeps "
            "its own realtime events, job worker list and rate-limit counters, so clients "
            "miss what the other processes do",
            hint=f"{SHARE_WITH_REDIS}, or serve with one process",
        )
    _upgrade(settings)
    settings.signing_key  # noqa: B018 - persist the secret once, before workers start
    with multiprocess_metrics(workers):
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, _stopped)
        uvicorn.run(
            "agenthub.app:create_app",
            factory=True,
            host=host or settings.host,
            port=port or settings.port,
            workers=workers,
            log_config=None,
            # Without a trusted proxy the client address is the connection's: uvicorn would
            # otherwise believe X-Forwarded-For from any local peer.
            proxy_headers=bool(settings.forwarded_allow_ips),
            forwarded_allow_ips=settings.forwarded_allow_ips,
            timeout_graceful_shutdown=30,
        )


def _stopped(signum: int, frame: FrameType | None) -> None:
    """uvicorn raises the SIGTERM/SIGINT it stopped on again once its graceful shutdown is
    over, with the handler that was there before it: the stop went as asked, exit status 0."""
    raise SystemExit(0)


@contextmanager
def multiprocess_metrics(processes: int) -> Iterator[None]:
    """With several server processes, give them a private `PROMETHEUS_MULTIPROC_DIR` (set
    before uvicorn spawns them, removed at exit) so `/metrics` sums all of them. A directory
    the operator configured is used as it is."""
    from agenthub.monitoring.exposition import MULTIPROCESS_ENV

    if processes < 2 or os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="agenthub-metrics-")
    os.environ[MULTIPROCESS_ENV] = directory
    try:
        yield
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


@app.command()
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="Jobs run at once [AGENTHUB_WORKER_CONCURRENCY]"),
    ] = None,
    kinds: Annotated[
        str | None,
        typer.Option(metavar="KIND,...", help="Comma-separated kinds to run (default: all)"),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            metavar="PORT",
            help="Serve this worker's /metrics [AGENTHUB_WORKER_METRICS_PORT]",
        ),
    ] = None,
) -> None:
    """Run jobs from the database queue beside API servers.

    Runs until SIGTERM or SIGINT, then hands unfinished jobs back after a grace period. Needs
    AGENTHUB_REDIS_URL, as the API servers use it, to reach their clients.
    """
    from agenthub.wiring import run_worker

    if metrics_port is not None:
        os.environ["AGENTHUB_WORKER_METRICS_PORT"] = str(metrics_port)
    settings = _settings()
    if not settings.redis_url:
        raise CommandError(
            "agenthub worker needs AGENTHUB_REDIS_URL: without Redis its job events and "
            "heartbeat stay in this process, so API clients never hear of its jobs' progress "
            "and the API reports no live worker",
            hint=f"{SHARE_WITH_REDIS}, or let `agenthub serve` run the jobs (it does unless "
            "--no-worker)",
        )
    _upgrade(settings)
    chosen = [k.strip() for k in (kinds or "").split(",") if k.strip()]
    asyncio.run(run_worker(settings, concurrency=concurrency, kinds=chosen))


@app.command("migrate")
def migrate_command(
    revision: Annotated[str, typer.Argument(metavar="REVISION", hidden=True)] = "head",
    down: Annotated[bool, typer.Option("--down", help="Revert down to REVISION")] = False,
) -> None:
    """Apply schema migrations, or revert them with --down.

    Migrates up to REVISION (default: the latest), or with --down reverts down to REVISION
    (default: the one before the current); then says which revision the database went from
    and to.
    """
    from agenthub.db import migrate

    url = _settings().database_url
    with reaching(url):
        before = migrate.revision_of(url)
        if down and before is None:
            typer.echo("nothing to revert: the database has no schema")
            return
        if down:
            migrate.downgrade(url, revision if revision != "head" else "-1")
        else:
            migrate.upgrade(url, revision)
        after = migrate.revision_of(url)
    if after == before:
        typer.echo(f"database already at {migrate.label(after)}")
    else:
        done = "reverted" if down else "migrated"
        typer.echo(f"{done} {migrate.label(before)} → {migrate.label(after)}")


@app.command()
def config() -> None:
    """Print the effective settings, secrets masked."""
    typer.echo(json.dumps(_load_settings().masked(), indent=2, default=str))


@asynccontextmanager
async def _transaction(settings: Settings) -> AsyncIterator[AsyncSession]:
    from agenthub.db.engine import Database

    database = Database(settings)
    try:
        async with database.transaction() as db:
            yield db
    finally:
        await database.dispose()


CLI_CLIENT_NAME = "agenthub-cli"


async def _create_user(settings: Settings, email: str, password: str, admin: bool) -> str:
    from agenthub.auth import service
    from agenthub.auth.audit import ClientInfo, audit
    from agenthub.core.security import password_hasher

    hasher = password_hasher(settings)
    try:
        async with _transaction(settings) as db:
            user = await service.create_user(
                db, hasher, email=email, password=password, is_admin=admin
            )
            audit(
                db,
                "admin.user_created",
                user_id=user.id,
                actor_id=None,
                client=ClientInfo(ip=None, user_agent=CLI_CLIENT_NAME),
                admin=admin,
            )
            return user.id
    finally:
        hasher.close()


async def _access_token(settings: Settings, email: str) -> str:
    """An access token in a login of its own (listed in the user's sessions, ended like any)."""
    from agenthub.auth import logins, service
    from agenthub.auth.audit import ClientInfo, audit
    from agenthub.core.security import encode_access_token

    minutes = settings.access_token_minutes
    async with _transaction(settings) as db:
        user = await service.active_user_by_email(db, email)
        if user is None:
            raise CommandError(f"no active user with email {email}", code=EXIT_FAILED)
        client = ClientInfo(ip=None, user_agent=CLI_CLIENT_NAME)
        login = await logins.start_login(db, user.id, client, lifetime=timedelta(minutes=minutes))
        audit(db, "admin.token_issued", user_id=user.id, actor_id=None, client=client)
    token, _ = encode_access_token(settings.signing_key, user.id, login.id, minutes=minutes)
    return token


@user_app.command("create")
def user_create(
    email: Annotated[str, typer.Option(metavar="EMAIL", help="Email address")],
    password: Annotated[
        str, typer.Option(metavar="PASSWORD", help="Password (8 characters or more)")
    ],
    admin: Annotated[bool, typer.Option("--admin", help="Grant the admin role")] = False,
) -> None:
    """Create a user account without the HTTP API; print its id. The password is refused if
    it is a common one or contains the email."""
    if len(password) < 8:
        raise typer.BadParameter("the password needs 8 characters or more")
    settings = _settings()
    _upgrade(settings)
    with reaching(settings.database_url):
        user_id = asyncio.run(_create_user(settings, email, password, admin))
    typer.echo(user_id)


@app.command()
def token(
    email: Annotated[str, typer.Option(metavar="EMAIL", help="Email of an existing user")],
) -> None:
    """Print an access token for a user (scripted set-up)."""
    settings = _settings()
    with reaching(settings.database_url):
        typer.echo(asyncio.run(_access_token(settings, email)))


@app.command()
def bench(
    url: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="Server base URL (default http://127.0.0.1:8000); repeat it to spread the "
            "users over several servers",
        ),
    ] = None,
    users: Annotated[int, typer.Option(min=1, metavar="N", help="Virtual users")] = 10,
    duration: Annotated[
        float | None,
        typer.Option(
            min=0.1, metavar="SECONDS", help="Seconds to run (default 30, none with --requests)"
        ),
    ] = None,
    requests: Annotated[
        int | None, typer.Option(min=1, metavar="N", help="Stop after this many requests")
    ] = None,
    subscribers: Annotated[
        int | None,
        typer.Option(min=0, metavar="N", help="WebSocket subscribers (default: one per user)"),
    ] = None,
    messages_per_session: Annotated[
        int,
        typer.Option(
            min=1, metavar="N", help="Messages a user posts into a session before a new one"
        ),
    ] = 20,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON on stdout")
    ] = False,
    email: Annotated[
        str | None,
        typer.Option(
            metavar="EMAIL",
            help="Log every user in as this account (default: register one per user)",
        ),
    ] = None,
    password: Annotated[
        str | None, typer.Option(metavar="PASSWORD", help="Password of --email")
    ] = None,
) -> None:
    """Load a running server with virtual users.

    The users log in, list sessions, create sessions, post messages, page history and get
    sessions; WebSocket subscribers receive the events of those messages. Prints throughput
    and latency percentiles per operation. The exit status is 1 if a request or event failed,
    2 if the run could not start.
    """
    from agenthub.load import command as load
    from agenthub.load.runner import BenchConfig, BenchError

    try:
        config = BenchConfig(
            urls=tuple(url or ["http://127.0.0.1:8000"]),
            users=users,
            subscribers=users if subscribers is None else subscribers,
            duration=30.0 if duration is None and requests is None else duration,
            requests=requests,
            messages_per_session=messages_per_session,
            email=email,
            password=password,
        )
    except BenchError as exc:
        raise typer.BadParameter(str(exc)) from exc
    raise typer.Exit(load.main(config, as_json=json_output))
