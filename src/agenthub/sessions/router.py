"""`/v1/sessions` routes."""

from __future__ import annotations

from fastapi import APIRouter

from agenthub.core.errors import problem_responses

router = APIRouter(prefix="/v1/sessions", tags=["sessions"], responses=problem_responses(401))
