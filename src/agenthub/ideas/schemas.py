"""Request and response bodies of `/v1/generate` and `/v1/ideas`, and the job's input."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from agenthub.config import RunnerName
from agenthub.core.jsondata import JsonObject
from agenthub.jobs.schemas import ID_MAX, JobError, JobProgress, JobStatus

IDEA_MAX = 20_000
TITLE_MAX = 200
HEADING_MAX = 200
SECTIONS_MAX = 30
LANGUAGE_MAX = 50
MODEL_MAX = 200

Heading = Annotated[str, Field(min_length=1, max_length=HEADING_MAX)]


class SpecOptions(BaseModel):
    """How to generate: which runner and model, which sections, in which language."""

    model_config = ConfigDict(extra="forbid")

    runner: RunnerName | None = Field(
        default=None, description="Default: the server's (`AGENTHUB_DEFAULT_RUNNER`)"
    )
    model: str | None = Field(default=None, min_length=1, max_length=MODEL_MAX)
    sections: list[Heading] = Field(
        default_factory=list,
        max_length=SECTIONS_MAX,
        description="The sections to write, in order; default: a standard set",
    )
    language: str | None = Field(
        default=None,
        min_length=1,
        max_length=LANGUAGE_MAX,
        description="The language of the specification; default: the idea's",
    )
    runner_options: JsonObject = Field(
        default_factory=dict,
        description="Runner settings (e.g. the echo runner's `delay_ms`, `fail_first`)",
    )


class SpecGenerateInput(SpecOptions):
    """The input of a `spec.generate` job: the idea and the options to generate it with."""

    idea_id: str = Field(max_length=ID_MAX, description="An idea of the job's owner (`ide_...`)")


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    idea: str = Field(min_length=1, max_length=IDEA_MAX, description="The idea, in plain words")
    options: SpecOptions = Field(default_factory=SpecOptions)

    @field_validator("idea")
    @classmethod
    def _has_text(cls, idea: str) -> str:
        if not idea.strip():
            raise ValueError("must not be empty or only whitespace")
        if "\x00" in idea:
            raise ValueError("must not contain NUL (\\u0000) characters")
        return idea


class GenerateAccepted(BaseModel):
    job_id: str = Field(description="Follow it on `job:{id}` or poll `GET /v1/jobs/{id}`")
    idea_id: str = Field(description="`GET /v1/ideas/{id}` shows the specification when ready")


class SpecSection(BaseModel):
    heading: str
    body: str = Field(description="Markdown")


class Spec(BaseModel):
    """A generated specification. `format` says how the model answered: `json` as asked, or
    `markdown` (free text split at its headings; `raw` keeps the text as it came)."""

    title: str
    summary: str | None = None
    sections: list[SpecSection]
    format: Literal["json", "markdown"]
    raw: str | None = None
    model: str | None = None


class SpecGenerateResult(BaseModel):
    idea_id: str
    title: str
    sections: int = Field(description="How many sections the specification has")
    usage: dict[str, int]


class IdeaOut(BaseModel):
    """An idea with its generation's state. `status`, `attempts`, `error`, `progress` and the
    timings are those of the job that generates (or generated) the spec. Once that job is
    deleted (job cleanup), `job_id` is null, `status` is `completed` if the spec was stored
    and `failed` otherwise, `finished_at` is when the spec was stored and the rest is null."""

    id: str
    idea: str
    options: dict[str, Any]
    title: str | None
    spec: Spec | None
    status: JobStatus
    job_id: str | None
    attempts: int | None
    error: JobError | None
    progress: JobProgress | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
