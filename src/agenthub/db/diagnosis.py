"""What keeps the database from being used, said so an operator knows what to do: the place
(host and port, or the SQLite file), the cause and the remedy. For the command line and the
logs only; API responses never name the database's address. Cheap to import: the command
line imports it before it knows whether it will touch a database."""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from agenthub.db.engine import Database

POSTGRES_PORT = 5432
RUN_MIGRATE = "run `agenthub migrate`"
CHECK_URL = "check AGENTHUB_DATABASE_URL"
# asyncpg's errors for a connection PostgreSQL turned down, by class name (importing asyncpg
# would cost SQLite deployments start-up time).
_TURNED_DOWN = {
    "InvalidCatalogNameError": "create the database or " + CHECK_URL,
    "InvalidAuthorizationSpecificationError": CHECK_URL,  # no such role
    "InvalidPasswordError": CHECK_URL,
    "CannotConnectNowError": "wait for PostgreSQL to finish starting",
    "TooManyConnectionsError": "lower AGENTHUB_DB_POOL_SIZE or raise PostgreSQL's max_connections",
}


class Problem(NamedTuple):
    """What is wrong with the database, and what to do about it."""

    what: str
    todo: str

    def __str__(self) -> str:
        return f"{self.what}; {self.todo}"


class DatabaseUnusable(Exception):
    """The database cannot be reached or used as it is."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.what)
        self.problem = problem


@contextmanager
def reaching(database_url: str) -> Iterator[None]:
    """Work on the database of `database_url`: a failure to reach or use it as it is becomes
    `DatabaseUnusable`."""
    from sqlalchemy.exc import SQLAlchemyError

    if problem := sqlite_problem(database_url):
        raise DatabaseUnusable(problem)
    try:
        yield
    except (SQLAlchemyError, OSError) as exc:
        problem = connection_problem(database_url, exc)
        if problem is None:
            raise
        raise DatabaseUnusable(problem) from exc


async def readiness_problem(database: Database) -> Problem | None:
    """None when the database answers at the head migration, else what is wrong."""
    from sqlalchemy.exc import SQLAlchemyError

    from agenthub.db.migrate import current_revision, pending_migration

    url = database.engine.url.render_as_string(hide_password=False)
    try:
        async with database.engine.connect() as conn:
            revision = await conn.run_sync(current_revision)
    except (SQLAlchemyError, OSError) as exc:
        return connection_problem(url, exc) or Problem(f"cannot use the database: {exc}", CHECK_URL)
    pending = pending_migration(revision)
    return None if pending is None else Problem(f"database {pending}", RUN_MIGRATE)


def sqlite_problem(database_url: str) -> Problem | None:
    """Why SQLite could not open the file of `database_url`, found before connecting (a
    failed connect leaves aiosqlite's thread reporting to a closed event loop)."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database or "").resolve()
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return Problem(
                f"cannot open {place(url)}: no permission to read and write it", CHECK_URL
            )
        return None
    if not path.parent.is_dir():
        what = f"cannot create {place(url)}: the directory {path.parent} does not exist"
        return Problem(what, "create the directory or " + CHECK_URL)
    if not os.access(path.parent, os.W_OK | os.X_OK):
        what = f"cannot create {place(url)}: no permission to write in {path.parent}"
        return Problem(what, CHECK_URL)
    return None


def connection_problem(database_url: str, exc: BaseException) -> Problem | None:
    """The problem `exc` says the database has, if it could not be reached or used as it is
    (unreachable, turned down, not migrated), else None."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    for error in _causes(exc):
        name = type(error).__name__
        if name == "UndefinedTableError" or (
            isinstance(error, sqlite3.OperationalError) and str(error).startswith("no such table")
        ):
            return Problem(f"{place(url)} has no agenthub schema ({error})", RUN_MIGRATE)
        if name in _TURNED_DOWN:
            return Problem(f"cannot connect to {place(url)}: {error}", _TURNED_DOWN[name])
        if isinstance(error, sqlite3.DatabaseError) and not isinstance(
            error, sqlite3.IntegrityError
        ):
            return Problem(f"cannot use {place(url)}: {error}", CHECK_URL)
        if isinstance(error, OSError):
            return _network_problem(url, error)
    return None


def place(url: URL) -> str:
    """Where the database is: `PostgreSQL at host:port` or `the SQLite database <file>`."""
    if url.get_backend_name() == "sqlite":
        return f"the SQLite database {Path(url.database or '').resolve()}"
    return f"PostgreSQL at {url.host or 'localhost'}:{url.port or POSTGRES_PORT}"


def _network_problem(url: URL, error: OSError) -> Problem:
    where = f"cannot connect to {place(url)}"
    if isinstance(error, ConnectionRefusedError) or "Connect call failed" in str(error):
        return Problem(f"{where}: connection refused", "start PostgreSQL or " + CHECK_URL)
    if isinstance(error, socket.gaierror):
        return Problem(f"{where}: the host name {url.host!r} does not resolve", CHECK_URL)
    if isinstance(error, TimeoutError):
        return Problem(
            f"{where}: no answer in time", f"{CHECK_URL} or raise AGENTHUB_DB_TIMEOUT_SECONDS"
        )
    return Problem(f"{where}: {error or type(error).__name__}", CHECK_URL)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it wraps (SQLAlchemy's `orig`, the cause, the context), depth first."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        error = todo.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        wrapped = (getattr(error, "orig", None), error.__cause__, error.__context__)
        todo.extend(reversed([w for w in wrapped if isinstance(w, BaseException)]))
