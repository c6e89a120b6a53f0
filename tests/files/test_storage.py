"""The local storage backend: atomic streamed saves, limits, reads, deletes, key safety."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agenthub.files.storage import (
    LocalStorage,
    ObjectNotFound,
    ObjectTooLarge,
    Storage,
    StorageError,
    key_for,
)


async def stream(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


async def read_all(storage: Storage, key: str) -> bytes:
    reader = await storage.open(key)
    data = b"".join([chunk async for chunk in reader.chunks])
    assert len(data) == reader.size
    return data


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "files", chunk_bytes=4)


async def test_save_open_delete_round_trip(storage: LocalStorage) -> None:
    key = key_for("fil_01J0000000000000000000000AB")
    assert key == "ab/fil_01J0000000000000000000000AB"
    assert not await storage.exists(key)

    stored = await storage.save(key, stream(b"hello ", b"", b"world"))
    assert stored.key == key
    assert stored.size == 11
    assert stored.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert await storage.exists(key)
    assert await read_all(storage, key) == b"hello world"
    assert files_under(storage.root) == [storage.root / key]

    assert await storage.delete(key) is True
    assert await storage.delete(key) is False
    assert not await storage.exists(key)
    with pytest.raises(ObjectNotFound):
        await storage.open(key)


async def test_over_the_limit_nothing_is_kept(storage: LocalStorage) -> None:
    with pytest.raises(ObjectTooLarge) as raised:
        await storage.save("aa/x", stream(b"12345", b"67890", b"never"), max_bytes=8)
    assert raised.value.limit == 8
    assert files_under(storage.root) == []
    exact = await storage.save("aa/x", stream(b"1234", b"5678"), max_bytes=8)
    assert exact.size == 8


async def test_a_failing_stream_leaves_nothing_and_keeps_the_old_object(
    storage: LocalStorage,
) -> None:
    await storage.save("aa/kept", stream(b"old"))

    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        await storage.save("aa/kept", broken())
    assert files_under(storage.root) == [storage.root / "aa" / "kept"]
    assert await read_all(storage, "aa/kept") == b"old"


async def test_empty_object(storage: LocalStorage) -> None:
    stored = await storage.save("aa/empty", stream())
    assert stored.size == 0
    assert stored.sha256 == hashlib.sha256(b"").hexdigest()
    assert await read_all(storage, "aa/empty") == b""


async def test_reading_stops_early_and_closes(storage: LocalStorage) -> None:
    await storage.save("aa/long", stream(b"0123456789" * 10))
    reader = await storage.open("aa/long")
    assert reader.size == 100
    assert await anext(reader.chunks) == b"0123"
    await reader.chunks.aclose()
    assert await storage.delete("aa/long")


@pytest.mark.parametrize(
    "key", ["../escape", "/etc/passwd", "aa/../../x", "aa//b", ".tmp/x", "", "a\x00b", "x" * 300]
)
async def test_keys_that_could_leave_the_root_are_refused(storage: LocalStorage, key: str) -> None:
    with pytest.raises(StorageError):
        await storage.save(key, stream(b"x"))
    with pytest.raises(StorageError):
        await storage.open(key)
    with pytest.raises(StorageError):
        await storage.delete(key)
    assert files_under(storage.root) == []
