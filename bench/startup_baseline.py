"""Baseline for `bench/startup.py`: the raw stack agenthub is built on, started to its first
answer.

FastAPI, pydantic, the SQLAlchemy ORM on an aiosqlite async engine and uvicorn, and nothing of
agenthub: one mapped table, created at start-up in `./baseline.db`, and `GET /ready`, which
reads it through the ORM and answers with a pydantic model. Run by uvicorn as a factory:
`python -m uvicorn --app-dir bench startup_baseline:create_app --factory`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Probe(Base):
    __tablename__ = "probes"

    id: Mapped[int] = mapped_column(primary_key=True)


class Ready(BaseModel):
    status: str
    probes: int


def create_app() -> FastAPI:
    engine = create_async_engine("sqlite+aiosqlite:///./baseline.db")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/ready")
    async def ready() -> Ready:
        async with AsyncSession(engine) as db:
            probes = await db.scalar(select(func.count()).select_from(Probe))
        return Ready(status="ready", probes=probes or 0)

    return app
