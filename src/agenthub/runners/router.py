"""`GET /v1/runners/health`: can jobs reach their models?"""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from agenthub.core.errors import problem_responses
from agenthub.runners.deps import RunnersDep
from agenthub.runners.schemas import RunnerHealthOut, RunnersHealth
from agenthub.web.caller import CurrentUser

router = APIRouter(prefix="/v1/runners", tags=["runners"], responses=problem_responses(401))


@router.get("/health", response_model=RunnersHealth, summary="Runner health")
async def runners_health(user: CurrentUser, runners: RunnersDep) -> RunnersHealth:
    """Each runner (`openai`, `cli`, `echo`): configured, reachable, version (the CLI's
    `--version`), probe latency and circuit-breaker state. Probes run concurrently."""
    reports = await runners.health()
    return RunnersHealth(data=[RunnerHealthOut(**asdict(report)) for report in reports])
