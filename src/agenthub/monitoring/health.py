"""Probes: liveness (the process answers) and readiness (database reachable and migrated)."""

from __future__ import annotations

import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import JSONResponse

from agenthub.core.errors import problem_response, problem_responses
from agenthub.db.engine import Database
from agenthub.db.migrate import current_revision, head_revision
from agenthub.db.session import get_database

router = APIRouter(prefix="/v1/health", tags=["health"])


class Live(BaseModel):
    status: Literal["ok"] = "ok"


class ComponentCheck(BaseModel):
    status: Literal["ok", "down"]
    latency_ms: float
    detail: str | None = None


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    database: ComponentCheck


@router.get("/live", response_model=Live)
async def live() -> Live:
    """The process is up and serving."""
    return Live()


async def check_database(database: Database) -> ComponentCheck:
    """Reachable and at the head migration, with the round-trip latency."""
    started = time.perf_counter()
    try:
        async with database.engine.connect() as conn:
            revision = await conn.run_sync(current_revision)
    except Exception as exc:  # any failure to reach the database means "down"
        return ComponentCheck(
            status="down",
            latency_ms=_ms(started),
            detail=f"unreachable ({type(exc).__name__})",
        )
    head = head_revision()
    if revision != head:
        return ComponentCheck(
            status="down",
            latency_ms=_ms(started),
            detail=f"schema at {revision or 'nothing'}, expected {head}; run `agenthub migrate`",
        )
    return ComponentCheck(status="ok", latency_ms=_ms(started))


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


@router.get("/ready", response_model=Ready, responses=problem_responses(503))
async def ready(request: Request) -> Ready | JSONResponse:
    """Ready to serve: 503 unless the database is reachable and migrated."""
    check = await check_database(get_database(request))
    if check.status != "ok":
        return problem_response(503, code="not-ready", detail=f"database: {check.detail}")
    return Ready(database=check)
