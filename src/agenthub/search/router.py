"""`/v1/search` routes."""

from __future__ import annotations

from fastapi import APIRouter

from agenthub.core.errors import problem_responses

router = APIRouter(prefix="/v1/search", tags=["search"], responses=problem_responses(401))
