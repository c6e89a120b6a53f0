"""`/v1/files` routes: streamed multipart upload, list, stats, get, download, patch, delete,
validate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from agenthub.cache.base import AppCache
from agenthub.config import Settings
from agenthub.core.errors import BadRequest, NotFound, UnsupportedMediaType, problem_responses
from agenthub.core.pagination import Page, PageParams, page_params
from agenthub.db.models.files import PURPOSES
from agenthub.db.session import DbSession
from agenthub.files import service, validation
from agenthub.files.deps import FileStorage, OwnedFile, Policy
from agenthub.files.filenames import content_disposition
from agenthub.files.multipart import MultipartReader, boundary_of
from agenthub.files.schemas import (
    FileOut,
    FilePatch,
    FileStats,
    Purpose,
    UploadResult,
    ValidationReport,
)
from agenthub.files.sniff import KNOWN_TYPES
from agenthub.files.storage import ObjectNotFound
from agenthub.web.caller import AppSettings, CurrentUser
from agenthub.web.idempotency import IdempotencyDep

router = APIRouter(prefix="/v1/files", tags=["files"], responses=problem_responses(401))

Paging = Annotated[PageParams, Depends(page_params)]

_UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["files"],
                "additionalProperties": False,
                "properties": {
                    "files": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "minItems": 1,
                        "description": "One part per file (at most `AGENTHUB_MAX_UPLOAD_FILES`, "
                        "default 10, each at most `AGENTHUB_MAX_FILE_BYTES`, default 50 MB)",
                    },
                    "purpose": {"type": "string", "enum": list(PURPOSES), "default": "attachment"},
                    "tags": {
                        "type": "string",
                        "description": "Comma-separated; at most 20 tags of at most 64 characters",
                    },
                    "metadata": {"type": "string", "description": "A JSON object"},
                },
            }
        }
    },
}
_BINARY = {"schema": {"type": "string", "format": "binary"}}


def upload_body_limits(settings: Settings) -> dict[str, int]:
    """Request body limits for `BodyLimitMiddleware`: the upload route may carry its files
    and form fields; every other `/v1/files/...` route keeps the app-wide limit."""
    upload = settings.max_upload_files * settings.max_file_bytes + settings.max_body_bytes
    return {router.prefix: upload, f"{router.prefix}/": settings.max_body_bytes}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UploadResult,
    responses=problem_responses(400, 409, 413, 415, 422),
    openapi_extra={"requestBody": _UPLOAD_BODY},
)
async def upload_files(
    request: Request,
    user: CurrentUser,
    db: DbSession,
    storage: FileStorage,
    policy: Policy,
    idempotency: IdempotencyDep,
) -> UploadResult:
    """Upload files (repeated multipart field `files`) with a shared `purpose`, `tags` and
    `metadata`.

    Each file is streamed to storage while it is hashed and sniffed; its content type is what
    the bytes are, not what the client says. One refused file (413 too large, 415 not an
    accepted type) fails the whole request and keeps nothing.
    """
    boundary = boundary_of(request.headers.get("content-type", ""))
    if boundary is None:
        raise UnsupportedMediaType("Send the files as multipart/form-data.")
    reader = MultipartReader(_body(request), boundary)
    staged: list[service.StagedFile] = []

    async def upload() -> UploadResult:
        # The body may take minutes to arrive: end the transaction that authentication and
        # the idempotency lookup opened, so no connection or SQLite lock is held meanwhile.
        await db.commit()
        form = await service.receive(storage, reader.parts(), policy)
        staged.extend(form.files)
        rows = await service.create_files(db, user.id, form)
        return UploadResult(data=[FileOut.from_row(row) for row in rows])

    try:
        result: UploadResult = await idempotency.run(
            status.HTTP_201_CREATED, upload, streamed=reader
        )
    except BaseException:
        await service.discard(storage, staged)
        raise
    return result


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect as exc:
        raise BadRequest("The upload broke off: the client disconnected.") from exc


@router.get("", response_model=Page[FileOut], responses=problem_responses(422))
async def list_files(
    user: CurrentUser,
    db: DbSession,
    paging: Paging,
    purpose: Purpose | None = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Part of the file name")] = None,
) -> Page[FileOut]:
    """The caller's files, newest first by default."""
    rows, has_more, cursor = await service.list_files(
        db, user.id, paging, purpose=purpose, tag=tag, q=q
    )
    return Page(data=[FileOut.from_row(r) for r in rows], has_more=has_more, next_cursor=cursor)


@router.get("/stats", response_model=FileStats)
async def file_stats(user: CurrentUser, db: DbSession, cache: AppCache) -> Response:
    """Count and bytes of the caller's files, in total, by purpose and by content type.
    Cached until your next change (`X-Cache: hit|miss`)."""
    return await cache.respond(user.id, "files.stats", lambda: service.file_stats(db, user.id))


@router.get("/{file_id}", response_model=FileOut, responses=problem_responses(404, 422))
async def get_file(file: OwnedFile) -> FileOut:
    return FileOut.from_row(file)


@router.get(
    "/{file_id}/content",
    response_class=Response,
    responses={
        200: {"description": "The content", "content": dict.fromkeys(KNOWN_TYPES, _BINARY)},
        304: {"description": "Not modified: the ETag matches `If-None-Match`"},
        **problem_responses(404, 422),
    },
)
async def download_file(
    file: OwnedFile,
    storage: FileStorage,
    if_none_match: Annotated[str | None, Header(max_length=1024)] = None,
) -> Response:
    """The content, streamed, always as an attachment; the ETag is the sha256."""
    headers = {
        "ETag": f'"{file.sha256}"',
        "Cache-Control": "private, no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    if if_none_match is not None and _etag_matches(if_none_match, file.sha256):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    try:
        content = await storage.open(file.storage_key)
    except ObjectNotFound as exc:
        raise NotFound(f"The content of file {file.id!r} is missing from storage.") from exc
    media_type = file.content_type
    if media_type.startswith("text/"):
        media_type += "; charset=utf-8"
    headers |= {
        "Content-Length": str(content.size),
        "Content-Disposition": content_disposition(file.filename),
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    return StreamingResponse(content.chunks, media_type=media_type, headers=headers)


def _etag_matches(header: str, sha256: str) -> bool:
    tags = {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}
    return "*" in tags or sha256 in tags


@router.patch("/{file_id}", response_model=FileOut, responses=problem_responses(404, 422))
async def patch_file(body: FilePatch, file: OwnedFile, db: DbSession) -> FileOut:
    """Rename, re-tag, re-purpose or replace the metadata of a file (not its content)."""
    return FileOut.from_row(await service.update_file(db, file, body))


@router.delete(
    "/{file_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(404, 422)
)
async def delete_file(
    file: OwnedFile, db: DbSession, storage: FileStorage, background: BackgroundTasks
) -> None:
    """Delete the file; its content is removed from storage once the deletion is committed."""
    key = await service.delete_file(db, file)
    background.add_task(service.remove_content, storage, key)


@router.post(
    "/{file_id}/validate", response_model=ValidationReport, responses=problem_responses(404, 422)
)
async def validate_file(
    file: OwnedFile, storage: FileStorage, settings: AppSettings
) -> ValidationReport:
    """Re-read the content and report: present, size and sha256 unchanged, still an accepted
    type, and for agent configs and JSON/YAML files, parseable."""
    return await validation.validate_file(storage, file, frozenset(settings.files_allowed_types))
