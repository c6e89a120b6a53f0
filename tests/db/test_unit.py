"""Units of work on the driver's connection (`db.unit`): the values the ORM reads and writes,
commit or rollback as a whole, and events only after a commit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from fastapi import FastAPI
from sqlalchemy import Table, bindparam, insert, select

from agenthub.core.events import emit
from agenthub.db.engine import Database
from agenthub.db.models.sessions import ChatSession, Message
from support import Account, record_events, seed_session

MESSAGES = cast(Table, Message.__table__)
BY_ID = select(MESSAGES).where(MESSAGES.c.id == bindparam("id"))
INSERT = insert(MESSAGES)


def new_row(account: Account, session_id: str, message_id: str) -> dict[str, object]:
    return {
        "id": message_id,
        "user_id": account.id,
        "session_id": session_id,
        "role": "user",
        "content": "héllo \U0001f600",
        "metadata": {"nested": {"list": [1, 2.5, None, "é"]}},
        "prompt_tokens": 3,
        "completion_tokens": 0,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "tool_calls": [{"id": "call_1", "name": "lookup", "arguments": {"q": "é", "n": 2}}],
        "tool_call_id": None,
    }


async def test_rows_written_and_read_are_the_orms(app: FastAPI, account: Account) -> None:
    database: Database = app.state.database
    session_id = await seed_session(app, account.id)
    row = new_row(account, session_id, "msg_unit_written")
    async with database.unit() as unit:
        await unit.execute(INSERT, row)
    async with database.transaction() as db:
        stored = await db.get(Message, row["id"])
        assert stored is not None
        assert (stored.content, stored.meta, stored.created_at) == (
            row["content"],
            row["metadata"],
            row["created_at"],
        )
        db.add(
            Message(
                id="msg_orm_written",
                user_id=account.id,
                session_id=session_id,
                role="assistant",
                content="from the ORM",
                meta={"k": [True]},
                created_at=datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC) + timedelta(microseconds=1),
            )
        )
    async with database.unit(writes=False) as unit:
        assert await unit.row(BY_ID, {"id": row["id"]}) == row
        read = await unit.row(BY_ID, {"id": "msg_orm_written"})
        assert read is not None
        assert (read["metadata"], read["created_at"]) == (
            {"k": [True]},
            datetime(2026, 5, 6, 7, 8, 9, 1, tzinfo=UTC),
        )
        assert await unit.row(BY_ID, {"id": "msg_none"}) is None


async def test_a_failed_unit_writes_nothing_and_publishes_nothing(
    app: FastAPI, account: Account
) -> None:
    database: Database = app.state.database
    published = record_events(app)
    session_id = await seed_session(app, account.id)
    with pytest.raises(RuntimeError, match="in the middle"):
        async with database.unit() as unit:
            await unit.execute(INSERT, new_row(account, session_id, "msg_rolled_back"))
            emit(unit, f"session:{session_id}", "message.created", {"id": "msg_rolled_back"})
            raise RuntimeError("in the middle")
    async with database.unit() as unit:
        assert await unit.row(BY_ID, {"id": "msg_rolled_back"}) is None
        await unit.execute(INSERT, new_row(account, session_id, "msg_committed"))
        emit(unit, f"session:{session_id}", "message.created", {"id": "msg_committed"})
        assert published.events == []  # not before the commit
    assert [e.data for e in published.named("message.created")] == [{"id": "msg_committed"}]
    async with database.transaction() as db:
        assert await db.get(Message, "msg_committed") is not None
        assert await db.get(Message, "msg_rolled_back") is None
        assert (await db.get(ChatSession, session_id)) is not None


async def test_each_statement_is_timed_for_the_query_metrics(
    app: FastAPI, account: Account
) -> None:
    database: Database = app.state.database
    session_id = await seed_session(app, account.id)
    timed: list[float] = []
    database.time_statements(timed.append)
    async with database.unit() as unit:
        await unit.execute(INSERT, new_row(account, session_id, "msg_timed"))
        await unit.row(BY_ID, {"id": "msg_timed"})
    assert len(timed) == 2
    assert all(0 < seconds < 60 for seconds in timed)
