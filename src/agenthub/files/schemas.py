"""Request and response bodies of `/v1/files`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, cast

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from agenthub.core.jsondata import JsonObject
from agenthub.core.schemas import Omittable
from agenthub.db.models.files import StoredFile

Purpose = Literal["attachment", "agent_config", "document"]

MAX_TAGS = 20
MAX_TAG_CHARS = 64


def _printable(value: str) -> str:
    if not value.isprintable():
        raise ValueError("must not contain control characters")
    return value


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(values))


Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TAG_CHARS),
    AfterValidator(_printable),
]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS), AfterValidator(_unique)]


class FileOut(BaseModel):
    id: str
    filename: str
    content_type: str = Field(description="As content sniffing found it")
    size: int = Field(description="Bytes")
    sha256: str
    purpose: Purpose
    tags: list[str]
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    content_url: str = Field(description="Where to download the content")

    @classmethod
    def from_row(cls, row: StoredFile) -> FileOut:
        return cls(
            id=row.id,
            filename=row.filename,
            content_type=row.content_type,
            size=row.size,
            sha256=row.sha256,
            purpose=cast(Purpose, row.purpose),  # one of PURPOSES, checked on every write
            tags=row.tags,
            metadata=row.meta,
            created_at=row.created_at,
            updated_at=row.updated_at,
            content_url=f"/v1/files/{row.id}/content",
        )


class UploadResult(BaseModel):
    data: list[FileOut]


class FilePatch(BaseModel):
    """Only the fields present change; none of them may be null."""

    model_config = ConfigDict(extra="forbid")

    filename: Omittable[str] = Field(default=None, min_length=1, max_length=255)
    purpose: Omittable[Purpose] = None
    tags: Omittable[Tags] = Field(default=None, description="Replaces the list")
    metadata: Omittable[JsonObject] = Field(default=None, description="Replaces the object")


class Bucket(BaseModel):
    count: int
    bytes: int


class FileStats(BaseModel):
    count: int
    total_bytes: int
    by_purpose: dict[str, Bucket]
    by_content_type: dict[str, Bucket]


class ValidationCheck(BaseModel):
    name: str = Field(description="e.g. sha256, content_type, parse")
    passed: bool
    detail: str | None = None


class ValidationReport(BaseModel):
    file_id: str
    valid: bool
    checks: list[ValidationCheck]
    errors: list[str]
