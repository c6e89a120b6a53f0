"""A pooled PostgreSQL connection the server ended (a restart, an administrator) is replaced at
checkout, without a round trip per checkout: the next request succeeds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from sqlalchemy import text

from agenthub.db.engine import Database
from conftest import PG_ADMIN_DSN, make_settings


async def test_a_connection_the_server_ended_is_replaced_at_checkout(
    postgres_url: str, tmp_path: Path
) -> None:
    database = Database(make_settings(postgres_url, tmp_path))
    try:
        async with database.transaction() as db:
            pid = await db.scalar(text("SELECT pg_backend_pid()"))
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await asyncio.sleep(0.2)  # the server's end of the socket reaches the client
        async with database.transaction() as db:
            assert await db.scalar(text("SELECT pg_backend_pid()")) != pid
    finally:
        await database.dispose()
