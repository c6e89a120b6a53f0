"""`/v1/agents` routes."""

from __future__ import annotations

from fastapi import APIRouter

from agenthub.core.errors import problem_responses

router = APIRouter(prefix="/v1/agents", tags=["agents"], responses=problem_responses(401))
