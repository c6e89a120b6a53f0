"""`/v1/projects` routes."""

from __future__ import annotations

from fastapi import APIRouter

from agenthub.core.errors import problem_responses

router = APIRouter(prefix="/v1/projects", tags=["projects"], responses=problem_responses(401))
