"""What the tests of a failing Redis under a real server share (import as
`from realtime.outage_support import ...`): a migrated PostgreSQL database of their own and the
environment of a server on it and on a Redis of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from agenthub.db import migrate
from conftest import TEST_SECRET, fresh_postgres
from processes import clean_env

UNLIMITED = "1000000/minute"


@contextmanager
def migrated_postgres(prefix: str) -> Iterator[str]:
    """The URL of a fresh PostgreSQL database at the head migration, dropped afterwards."""
    with fresh_postgres(prefix) as url:
        migrate.upgrade(url)
        yield url


def outage_env(database: str, redis: str, workdir: Path, **settings: str) -> dict[str, str]:
    """A server's environment on `database` and the Redis at `redis`, rate limits on (counted
    in Redis, then in process) but above what a test sends; `settings` are added."""
    return clean_env(
        AGENTHUB_DATABASE_URL=database,
        AGENTHUB_REDIS_URL=redis,
        AGENTHUB_SECRET_KEY=TEST_SECRET,
        AGENTHUB_AUTO_MIGRATE="false",
        AGENTHUB_LOG_LEVEL="WARNING",
        AGENTHUB_FILES_DIR=str(workdir / "files"),
        AGENTHUB_RATE_LIMIT_USER=UNLIMITED,
        AGENTHUB_RATE_LIMIT_IP=UNLIMITED,
        AGENTHUB_LOGIN_LIMIT_IP=UNLIMITED,
        AGENTHUB_LOGIN_LIMIT_ACCOUNT=UNLIMITED,
        **settings,
    )
