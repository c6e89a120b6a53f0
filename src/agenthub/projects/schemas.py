"""Request and response bodies of `/v1/projects`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agenthub.core.jsondata import JsonObject
from agenthub.core.schemas import Omittable

ProjectStatus = Literal["active", "paused", "completed", "archived"]

NAME_MAX = 200
DESCRIPTION_MAX = 20_000


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=NAME_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_MAX)
    status: ProjectStatus = "active"
    metadata: JsonObject = Field(default_factory=dict)


class ProjectPatch(BaseModel):
    """Only the fields present change; none of them may be null."""

    model_config = ConfigDict(extra="forbid")

    name: Omittable[str] = Field(default=None, min_length=1, max_length=NAME_MAX)
    description: Omittable[str] = Field(default=None, max_length=DESCRIPTION_MAX)
    status: Omittable[ProjectStatus] = None
    metadata: Omittable[JsonObject] = Field(default=None, description="Replaces the object")


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    description: str
    status: ProjectStatus
    metadata: dict[str, Any] = Field(validation_alias="meta")
    created_at: datetime
    updated_at: datetime


class ProjectUsage(BaseModel):
    """One project's share of the workspace: live (not deleted) sessions and their tokens."""

    id: str
    name: str
    status: ProjectStatus
    agents: int
    sessions: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ProjectStats(BaseModel):
    total: int
    by_status: dict[ProjectStatus, int]
    projects: list[ProjectUsage] = Field(description="Newest first")
