"""Helpers of the search tests (import as `from search_support import ...`)."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy import text

from agenthub.search import sqlite as sqlite_search


async def check_index(app: FastAPI) -> None:
    """On SQLite, FTS5's own check that each index matches its content table exactly."""
    async with app.state.database.transaction() as db:
        if db.bind.dialect.name == "sqlite":
            for fts in sqlite_search.FTS_TABLES:
                await db.execute(
                    text(f"INSERT INTO {fts}({fts}, rank) VALUES ('integrity-check', 1)")  # noqa: S608
                )
