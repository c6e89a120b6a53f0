"""The peer of `bench/jobs.py`: procrastinate on the same PostgreSQL server, its own database.

Run as a script it is one worker process (`python bench/jobs_peer.py --dsn DSN --concurrency C`,
until SIGTERM); imported, `Procrastinate` is the benchmark's handle on that queue: schema,
deferring no-op jobs, and reading its own timestamps back (`procrastinate_events`: `deferred`,
`started` and `succeeded` rows, each stamped `NOW()` by PostgreSQL's triggers).

Needs the bench extra: `pip install -e '.[bench]'` (procrastinate and psycopg's binary build).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import asyncpg
import procrastinate

TASK = "bench.noop"
POOL_SPARE = 2
"""Worker pool connections beyond `concurrency`: the LISTEN connection and the fetch loop."""


async def noop() -> None:
    """Nothing: what is left is the queue's own cost per job."""


def make_app(dsn: str, max_connections: int) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(conninfo=dsn, min_size=1, max_size=max_connections)
    app = procrastinate.App(connector=connector)
    app.task(name=TASK)(noop)
    return app


class Procrastinate:
    """One fresh database's procrastinate queue, as `bench/jobs.py` drives it."""

    label = "procrastinate"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pg_database: str | None = dsn.rsplit("/", 1)[1]
        self.app = make_app(dsn, max_connections=2)
        self._conn: Any = None

    async def start(self) -> None:
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()
        self._conn = await asyncpg.connect(self.dsn)

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
        await self.app.close_async()

    def worker_command(self, concurrency: int) -> list[str]:
        script = str(Path(__file__).resolve())
        return [sys.executable, script, "--dsn", self.dsn, "--concurrency", str(concurrency)]

    def worker_env(self) -> dict[str, str]:
        return {}

    async def enqueue_batch(self, count: int) -> None:
        """`count` jobs in one transaction (a single multi-row INSERT)."""
        await self.app.tasks[TASK].batch_defer_async(*({} for _ in range(count)))

    async def enqueue_one(self) -> str:
        job_id = await self.app.tasks[TASK].defer_async()
        return str(job_id)

    async def progress(self) -> tuple[int, int]:
        """(succeeded, failed or aborted) jobs."""
        row = await self._conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'succeeded'),"
            " count(*) FILTER (WHERE status IN ('failed', 'aborted', 'cancelled'))"
            " FROM procrastinate_jobs"
        )
        return int(row[0]), int(row[1])

    async def busy_seconds(self) -> float:
        """From the first job's start to the last job's success."""
        seconds = await self._conn.fetchval(
            "SELECT EXTRACT(EPOCH FROM max(at) FILTER (WHERE type = 'succeeded')"
            " - min(at) FILTER (WHERE type = 'started'))::float8 FROM procrastinate_events"
        )
        return float(seconds)

    async def latencies(self, ids: list[str]) -> list[float]:
        """Seconds from `deferred` to `started` of each job."""
        rows = await self._conn.fetch(
            "SELECT EXTRACT(EPOCH FROM s.at - d.at)::float8 FROM procrastinate_events d"
            " JOIN procrastinate_events s ON s.job_id = d.job_id AND s.type = 'started'"
            " WHERE d.type = 'deferred' AND d.job_id = ANY($1::bigint[])",
            [int(i) for i in ids],
        )
        return [float(row[0]) for row in rows]


async def run_worker(dsn: str, concurrency: int) -> None:
    app = make_app(dsn, max_connections=concurrency + POOL_SPARE)
    async with app.open_async():
        await app.run_worker_async(concurrency=concurrency, wait=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A procrastinate worker for bench/jobs.py")
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args(argv)
    asyncio.run(run_worker(args.dsn, args.concurrency))


if __name__ == "__main__":
    main()
