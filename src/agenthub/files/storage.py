"""Where file content lives: a small `Storage` interface and the local-directory backend.

A backend stores opaque objects under keys that the service derives from file ids (never from
client file names). `save` consumes a stream chunk by chunk, so no object is ever held whole
in memory, and reports the size and sha256 it saw; an object only becomes visible under its
key once it is complete. An S3-compatible backend is one more module implementing the same
four methods (multipart upload in `save`, a streamed GetObject in `open`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import anyio

CHUNK_BYTES = 256 * 1024
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*(/[A-Za-z0-9][A-Za-z0-9_\-]*)*$")
_TMP_DIR = ".tmp"


class StorageError(Exception):
    """Base of the errors a storage backend raises."""


class ObjectNotFound(StorageError):
    """No object is stored under this key."""


class ObjectTooLarge(StorageError):
    """The stream passed `max_bytes`; nothing was stored."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"The object exceeds {limit} bytes.")
        self.limit = limit


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectReader:
    """An open object: its size and its content as chunks (close it by exhausting or `aclose`)."""

    size: int
    chunks: AsyncGenerator[bytes, None]


class Storage(Protocol):
    async def save(
        self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None
    ) -> StoredObject:
        """Store the stream under `key`; on any error (`ObjectTooLarge`, an exception of the
        stream) nothing is left behind and the error propagates."""
        ...

    async def open(self, key: str) -> ObjectReader:
        """The object for reading; `ObjectNotFound` if there is none."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove the object; False when there was none."""
        ...

    async def exists(self, key: str) -> bool: ...


def key_for(file_id: str) -> str:
    """The storage key of a file: its id, sharded by the id's random tail."""
    return f"{file_id[-2:].lower()}/{file_id}"


class LocalStorage:
    """Objects as files under one directory (`AGENTHUB_FILES_DIR`).

    Content is written to a temporary file in `<root>/.tmp` (same file system) while it is
    counted and hashed, flushed to disk, then renamed into place atomically. Blocking file
    calls run in worker threads, one call per chunk.
    """

    def __init__(self, root: Path, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.root = root
        self.chunk_bytes = chunk_bytes

    def path(self, key: str) -> Path:
        """The file of a key; a key that could leave the root is refused."""
        if not _KEY.match(key) or len(key) > 255:
            raise StorageError(f"Invalid storage key {key!r}.")
        return self.root / key

    async def save(
        self, key: str, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None
    ) -> StoredObject:
        target = self.path(key)
        handle = await asyncio.to_thread(self._temp_file)
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise ObjectTooLarge(max_bytes)
                await asyncio.to_thread(_write, handle, digest, chunk)
            await asyncio.to_thread(_commit, handle, target)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await asyncio.to_thread(_discard, handle)
            raise
        return StoredObject(key=key, size=size, sha256=digest.hexdigest())

    async def open(self, key: str) -> ObjectReader:
        path = self.path(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFound(key) from exc
        size = os.fstat(handle.fileno()).st_size
        return ObjectReader(size=size, chunks=self._read(handle))

    async def _read(self, handle: IO[bytes]) -> AsyncGenerator[bytes, None]:
        try:
            while chunk := await asyncio.to_thread(handle.read, self.chunk_bytes):
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> bool:
        path = self.path(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return False
        return True

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path(key).is_file)

    def _temp_file(self) -> IO[bytes]:
        directory = self.root / _TMP_DIR
        directory.mkdir(parents=True, exist_ok=True)
        # Closed by _commit or _discard.
        return tempfile.NamedTemporaryFile(dir=directory, suffix=".part", delete=False)


def _write(handle: IO[bytes], digest: hashlib._Hash, chunk: bytes) -> None:
    handle.write(chunk)
    digest.update(chunk)


def _commit(handle: IO[bytes], target: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(handle.name, target)


def _discard(handle: IO[bytes]) -> None:
    handle.close()
    Path(handle.name).unlink(missing_ok=True)
