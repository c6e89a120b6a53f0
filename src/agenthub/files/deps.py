"""Dependencies of the file routes: the storage backend, the upload policy, an owned file."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from agenthub.core.ownership import get_owned
from agenthub.db.models.files import StoredFile
from agenthub.db.session import DbSession
from agenthub.files.service import UploadPolicy
from agenthub.files.storage import LocalStorage, Storage
from agenthub.web.caller import AppSettings, CurrentUser


async def get_storage(request: Request, settings: AppSettings) -> Storage:
    """The app's file storage (the local directory `AGENTHUB_FILES_DIR`), made on first use."""
    storage: Storage | None = getattr(request.app.state, "file_storage", None)
    if storage is None:
        storage = LocalStorage(settings.files_dir)
        request.app.state.file_storage = storage
    return storage


async def upload_policy(settings: AppSettings) -> UploadPolicy:
    return UploadPolicy(
        max_files=settings.max_upload_files,
        max_file_bytes=settings.max_file_bytes,
        allowed_types=frozenset(settings.files_allowed_types),
    )


FileId = Annotated[str, Path(max_length=64, description="A file id (`fil_...`)")]


async def owned_file(file_id: FileId, user: CurrentUser, db: DbSession) -> StoredFile:
    """The caller's file with this id; 404 for a missing file and for another user's."""
    return await get_owned(db, StoredFile, file_id, user.id, what="File")


FileStorage = Annotated[Storage, Depends(get_storage)]
Policy = Annotated[UploadPolicy, Depends(upload_policy)]
OwnedFile = Annotated[StoredFile, Depends(owned_file)]
