"""Files: receive uploads into storage, record them, list, count, change, delete."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import structlog
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from agenthub.core.channels import USER
from agenthub.core.errors import FieldError, PayloadTooLarge, ValidationFailed
from agenthub.core.events import emit
from agenthub.core.ids import new_id
from agenthub.core.jsondata import JsonObject
from agenthub.core.ownership import owned_by
from agenthub.core.pagination import PageParams, keyset_page
from agenthub.core.text import dotted, not_unicode, surrogate_in
from agenthub.db.base import utcnow
from agenthub.db.models.files import PURPOSES, StoredFile
from agenthub.files.filenames import FALLBACK_NAME, sanitize_filename
from agenthub.files.multipart import Part
from agenthub.files.schemas import Bucket, FileOut, FilePatch, FileStats, Tags
from agenthub.files.sniff import Sniffer
from agenthub.files.storage import (
    LocalStorage,
    ObjectTooLarge,
    Storage,
    StoredObject,
    key_for,
)

FILE_FIELD = "files"
MAX_FIELD_BYTES = 65_536
SWEEP_BATCH = 500

log = structlog.get_logger("agenthub.files")

_tags = TypeAdapter(Tags)
_metadata = TypeAdapter(JsonObject)


@dataclass(frozen=True)
class UploadPolicy:
    max_files: int
    max_file_bytes: int
    allowed_types: frozenset[str]


@dataclass(frozen=True)
class StagedFile:
    """A file whose content is in storage but whose row is not written yet."""

    id: str
    filename: str
    content_type: str
    stored: StoredObject


@dataclass
class UploadForm:
    files: list[StagedFile] = field(default_factory=list)
    purpose: str = "attachment"
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


# Upload


async def receive(storage: Storage, parts: AsyncIterable[Part], policy: UploadPolicy) -> UploadForm:
    """Stream every file part of an upload into storage and read the form fields.

    All or nothing: when a part is refused (415, 413, 422) or the body breaks off, the
    content stored so far is removed before the error propagates.
    """
    form = UploadForm()
    seen: set[str] = set()
    try:
        async for part in parts:
            if part.filename is None:
                if part.name == FILE_FIELD:
                    raise _invalid(part.name, "must be file parts (with a filename)")
                if part.name in seen:
                    raise _invalid(part.name, "may be given once")
                seen.add(part.name)
                _set_field(form, part.name, await part.read(MAX_FIELD_BYTES))
            elif part.name != FILE_FIELD:
                raise _invalid(part.name, f"files go in the repeated field {FILE_FIELD!r}")
            elif len(form.files) >= policy.max_files:
                raise _invalid(FILE_FIELD, f"at most {policy.max_files} files per upload")
            else:
                form.files.append(await _store(storage, part, policy))
        if not form.files:
            raise _invalid(FILE_FIELD, "at least one file is required")
    except BaseException:
        await discard(storage, form.files)
        raise
    return form


async def _store(storage: Storage, part: Part, policy: UploadPolicy) -> StagedFile:
    file_id = new_id("fil")
    filename = sanitize_filename(part.filename or "") or FALLBACK_NAME
    sniffer = Sniffer(filename, policy.allowed_types)
    found: list[str] = []

    async def inspected() -> AsyncIterator[bytes]:
        async for chunk in part.chunks():
            sniffer.feed(chunk)
            yield chunk
        found.append(sniffer.finish())

    try:
        stored = await storage.save(key_for(file_id), inspected(), max_bytes=policy.max_file_bytes)
    except ObjectTooLarge as exc:
        raise PayloadTooLarge(
            f"{filename} exceeds the limit of {exc.limit} bytes per file."
        ) from exc
    return StagedFile(id=file_id, filename=filename, content_type=found[0], stored=stored)


def _set_field(form: UploadForm, name: str, raw: bytes) -> None:
    try:
        value = raw.decode()
    except UnicodeDecodeError as exc:
        raise _invalid(name, "must be UTF-8 text") from exc
    if name == "purpose":
        if value not in PURPOSES:
            raise _invalid(name, f"must be one of {', '.join(PURPOSES)}")
        form.purpose = value
    elif name == "tags":
        items = [tag.strip() for tag in value.split(",")]
        form.tags = _validated(_tags, [tag for tag in items if tag], name)
    elif name == "metadata":
        try:
            parsed = json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise _invalid(name, "must be a JSON object") from exc
        if not isinstance(parsed, dict):
            raise _invalid(name, "must be a JSON object")
        if (path := surrogate_in(value, parsed)) is not None:
            raise not_unicode(dotted((name, *path)), f"Form field {name!r}")
        form.metadata = _validated(_metadata, parsed, name)
    else:
        raise _invalid(name, "is not a field of this form (files, purpose, tags, metadata)")


def _validated(adapter: TypeAdapter[Any], value: Any, name: str) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise ValidationFailed(
            f"Form field {name!r} is invalid.",
            errors=[
                FieldError(field=".".join([name, *map(str, e["loc"])]), message=e["msg"])
                for e in exc.errors()
            ],
        ) from exc


def _invalid(name: str, message: str) -> ValidationFailed:
    return ValidationFailed(
        f"Form field {name!r}: {message}.", errors=[FieldError(field=name, message=message)]
    )


async def discard(storage: Storage, files: Sequence[StagedFile]) -> None:
    """Remove the content of staged files (the upload failed); never raises."""
    with anyio.CancelScope(shield=True):
        for staged in files:
            await remove_content(storage, staged.stored.key)


async def remove_content(storage: Storage, key: str) -> bool:
    """Delete an object whose row is gone (False if there was none); a failure leaves an
    orphan and is only logged."""
    try:
        return await storage.delete(key)
    except Exception as exc:
        log.warning("file_content_not_removed", key=key, error=repr(exc))
        return False


async def create_files(db: AsyncSession, user_id: str, form: UploadForm) -> list[StoredFile]:
    """The rows of a received upload, one per file, each announced as `file.created`."""
    rows = [
        StoredFile(
            id=staged.id,
            user_id=user_id,
            filename=staged.filename,
            content_type=staged.content_type,
            size=staged.stored.size,
            sha256=staged.stored.sha256,
            purpose=form.purpose,
            tags=list(form.tags),
            meta=dict(form.metadata),
            storage_key=staged.stored.key,
        )
        for staged in form.files
    ]
    db.add_all(rows)
    await db.flush()
    for row in rows:
        emit(db, USER(user_id), "file.created", _event_data(row))
    return rows


def _event_data(row: StoredFile) -> dict[str, Any]:
    return FileOut.from_row(row).model_dump(mode="json")


# Reads


async def list_files(
    db: AsyncSession,
    user_id: str,
    params: PageParams,
    *,
    purpose: str | None = None,
    tag: str | None = None,
    q: str | None = None,
) -> tuple[Sequence[StoredFile], bool, str | None]:
    stmt = owned_by(StoredFile, user_id)
    if purpose is not None:
        stmt = stmt.where(StoredFile.purpose == purpose)
    if tag is not None:
        stmt = stmt.where(_has_tag(db, tag))
    if q:
        stmt = stmt.where(func.lower(StoredFile.filename).contains(q.lower(), autoescape=True))
    return await keyset_page(db, stmt, StoredFile.id, params, "fil")


def _has_tag(db: AsyncSession, tag: str) -> ColumnElement[bool]:
    """`tag` is one of the file's tags: JSONB containment on PostgreSQL, json_each on SQLite."""
    if db.get_bind().dialect.name == "postgresql":
        contains: ColumnElement[bool] = StoredFile.tags.cast(JSONB).contains([tag])
        return contains
    values = func.json_each(StoredFile.tags).table_valued("value")
    return select(values.c.value).where(values.c.value == tag).exists()


async def file_stats(db: AsyncSession, user_id: str) -> FileStats:
    by_purpose = await _buckets(db, user_id, StoredFile.purpose)
    by_type = await _buckets(db, user_id, StoredFile.content_type)
    return FileStats(
        count=sum(b.count for b in by_purpose.values()),
        total_bytes=sum(b.bytes for b in by_purpose.values()),
        by_purpose=by_purpose,
        by_content_type=by_type,
    )


async def _buckets(
    db: AsyncSession, user_id: str, column: InstrumentedAttribute[str]
) -> dict[str, Bucket]:
    rows = await db.execute(
        select(column, func.count(), func.coalesce(func.sum(StoredFile.size), 0))
        .where(StoredFile.user_id == user_id)
        .group_by(column)
        .order_by(column)
    )
    return {key: Bucket(count=int(count), bytes=int(size)) for key, count, size in rows}


# Writes


async def update_file(db: AsyncSession, row: StoredFile, patch: FilePatch) -> StoredFile:
    changes = patch.model_dump(exclude_unset=True)
    if "filename" in changes:
        name = sanitize_filename(changes["filename"])
        if not name:
            raise _invalid("filename", "has no usable characters")
        row.filename = name
    if "purpose" in changes:
        row.purpose = changes["purpose"]
    if "tags" in changes:
        row.tags = list(changes["tags"])
    if "metadata" in changes:
        row.meta = dict(changes["metadata"])
    if changes:
        row.updated_at = utcnow()
        await db.flush()
        emit(db, USER(row.user_id), "file.updated", _event_data(row))
    return row


async def delete_file(db: AsyncSession, row: StoredFile) -> str:
    """Delete the row; returns the storage key, whose content the caller removes after commit."""
    await db.delete(row)
    await db.flush()
    emit(db, USER(row.user_id), "file.deleted", {"id": row.id})
    return row.storage_key


# Maintenance


async def sweep_orphans(db: AsyncSession, storage: LocalStorage, before: datetime) -> int:
    """Remove stored content that no file row references and that was last written before
    `before`: an upload whose transaction failed, content whose removal failed, the files of a
    purged account, a temporary file of a process killed mid-upload. Younger content is left
    alone, as its upload may still commit. How many objects were removed."""
    removed = 0
    for directory in await asyncio.to_thread(_subdirectories, storage.root):
        stale = await asyncio.to_thread(_stale_files, directory, before.timestamp())
        if directory.name.startswith("."):  # the storage's own temporary files
            await asyncio.to_thread(_unlink, stale)
            removed += len(stale)
            continue
        keys = [key for key in map(_key_of, stale) if key is not None]
        for start in range(0, len(keys), SWEEP_BATCH):
            batch = keys[start : start + SWEEP_BATCH]
            referenced = set(
                await db.scalars(
                    select(StoredFile.storage_key).where(StoredFile.storage_key.in_(batch))
                )
            )
            for key in batch:
                if key not in referenced and await remove_content(storage, key):
                    removed += 1
    return removed


def _key_of(path: Path) -> str | None:
    """The storage key of a stored object's file; None for a name the storage never gives."""
    key = f"{path.parent.name}/{path.name}"
    return key if path.name.startswith("fil_") and key_for(path.name) == key else None


def _subdirectories(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    with os.scandir(root) as entries:
        return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]


def _stale_files(directory: Path, before: float) -> list[Path]:
    """The regular files directly in `directory` last modified before `before` (epoch s)."""
    stale = []
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < before:
                    stale.append(Path(entry.path))
            except FileNotFoundError:
                continue  # removed meanwhile
    return stale


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
