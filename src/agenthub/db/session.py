"""The request's unit of work: commit when the handler returns, roll back when it raises."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.db.engine import Database


def get_database(request: Request) -> Database:
    db: Database = request.app.state.database
    return db


async def _unit_of_work(request: Request) -> AsyncIterator[AsyncSession]:
    # scope="function" below: the commit happens before the response is sent, so a client
    # never sees success for a write that failed to commit.
    async with get_database(request).transaction() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(_unit_of_work, scope="function")]
