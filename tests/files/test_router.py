"""`/v1/files` through the HTTP API, on SQLite and PostgreSQL: streamed multipart upload,
content sniffing, download headers, list/filter/paging, patch, delete, validate, stats,
isolation, limits, idempotent replay and bounded memory."""

from __future__ import annotations

import hashlib
import io
import json
import tracemalloc
import zipfile
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import Message

from agenthub.config import Settings
from conftest import AccountFactory, asgi_client, custom_app
from processes import Server
from realtime_support import sign_up
from support import Account, assert_problem, record_events

BOUNDARY = "agenthub-test-boundary"

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(200)
GIF = b"GIF89a" + bytes(100)
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + bytes(100)
PDF = b"%PDF-1.7\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(120)

FileSpec = tuple[str, bytes]


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "inside a zip")
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_objects(settings: Settings) -> list[Path]:
    """Every file under the storage directory, temporary files included."""
    root = settings.files_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def upload(
    client: httpx.AsyncClient,
    account: Account,
    files: Sequence[FileSpec],
    *,
    status: int = 201,
    headers: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
) -> httpx.Response:
    response = await client.post(
        "/v1/files",
        files=[("files", (name, content, "application/octet-stream")) for name, content in files],
        data=form or {},
        headers={**account.headers, **(headers or {})},
    )
    assert response.status_code == status, response.text
    return response


async def upload_one(
    client: httpx.AsyncClient, account: Account, name: str, content: bytes, **fields: str
) -> dict[str, Any]:
    response = await upload(client, account, [(name, content)], form=fields)
    item: dict[str, Any] = response.json()["data"][0]
    return item


def raw_form(parts: Iterable[tuple[str, str | None, bytes]]) -> bytes:
    """A multipart body built by hand: (field name, raw filename or None, content)."""
    out = bytearray()
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        out += content + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return bytes(out)


async def post_raw(
    client: httpx.AsyncClient,
    account: Account,
    body: bytes | AsyncIterator[bytes],
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        "/v1/files",
        content=body,
        headers={
            **account.headers,
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            **(headers or {}),
        },
    )


@pytest.fixture
async def limited(database_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an app allowing 2 files of at most 4 KiB per upload (same database and
    storage directory as the `client` fixture's app)."""
    async with (
        custom_app(database_url, tmp_path, max_upload_files=2, max_file_bytes=4096) as app,
        asgi_client(app) as client,
    ):
        yield client


# Upload and download


async def test_upload_several_files_sniffs_hashes_and_records_them(
    client: httpx.AsyncClient, account: Account
) -> None:
    files = [
        ("notes.txt", "plain text, ünïcode too\n".encode()),
        ("picture.bin", PNG),
        ("config", b'{"model": "gpt", "temperature": 0.2}'),
        ("readme.md", b"# Title\n\nBody\n"),
        ("table.csv", b"a,b\n1,2\n"),
        ("agent.yaml", b"model: x\n"),
        ("photo", JPEG),
        ("anim", GIF),
        ("still", WEBP),
        ("paper", PDF),
    ]
    response = await upload(
        client,
        account,
        files,
        form={
            "purpose": "document",
            "tags": " alpha, beta ,, alpha",
            "metadata": '{"source": "test", "n": 1}',
        },
    )
    data = response.json()["data"]
    assert [item["filename"] for item in data] == [name for name, _ in files]
    assert [item["content_type"] for item in data] == [
        "text/plain",
        "image/png",
        "application/json",
        "text/markdown",
        "text/csv",
        "application/x-yaml",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "application/pdf",
    ]
    for item, (_, content) in zip(data, files, strict=True):
        assert item["id"].startswith("fil_")
        assert item["size"] == len(content)
        assert item["sha256"] == sha256(content)
        assert item["purpose"] == "document"
        assert item["tags"] == ["alpha", "beta"]
        assert item["metadata"] == {"source": "test", "n": 1}
        assert item["created_at"].endswith("Z")
        assert item["content_url"] == f"/v1/files/{item['id']}/content"

    got = await client.get(f"/v1/files/{data[1]['id']}", headers=account.headers)
    assert got.status_code == 200
    assert got.json() == data[1]


async def test_zip_archive_is_accepted(client: httpx.AsyncClient, account: Account) -> None:
    item = await upload_one(client, account, "bundle.zip", zip_bytes())
    assert item["content_type"] == "application/zip"
    assert item["purpose"] == "attachment"
    assert item["tags"] == []
    assert item["metadata"] == {}


async def test_download_streams_bytes_with_safe_headers(
    client: httpx.AsyncClient, account: Account
) -> None:
    text = await upload_one(client, account, "notes.txt", b"line one\nline two\n")
    image = await upload_one(client, account, "pic.png", PNG)

    response = await client.get(f"/v1/files/{text['id']}/content", headers=account.headers)
    assert response.status_code == 200
    assert response.content == b"line one\nline two\n"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["content-disposition"] == 'attachment; filename="notes.txt"'
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["etag"] == f'"{text["sha256"]}"'

    binary = await client.get(f"/v1/files/{image['id']}/content", headers=account.headers)
    assert binary.content == PNG
    assert binary.headers["content-type"] == "image/png"
    assert sha256(binary.content) == image["sha256"]

    again = await client.get(
        f"/v1/files/{text['id']}/content",
        headers={**account.headers, "If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304
    assert again.content == b""


async def test_non_ascii_name_gets_rfc6266_filename_star(
    client: httpx.AsyncClient, account: Account
) -> None:
    item = await upload_one(client, account, "résumé 文件.md", b"# CV\n")
    assert item["filename"] == "résumé 文件.md"
    response = await client.get(f"/v1/files/{item['id']}/content", headers=account.headers)
    assert response.headers["content-disposition"] == (
        'attachment; filename="r_sum_ __.md"; '
        "filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%96%87%E4%BB%B6.md"
    )


async def test_file_names_are_sanitized_and_never_used_as_paths(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    names = [
        "../../etc/passwd",
        "..\\..\\windows\\win.ini",
        "/absolute/path/report.txt",
        ".env",
        "bell\x07and\x1bescape.txt",
        "evil\u202etxt.exe",
        "..",
        "a<b>c:d|e?.txt",
    ]
    body = raw_form(("files", name, b"text\n") for name in names)
    response = await post_raw(client, account, body)
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert [item["filename"] for item in data] == [
        "passwd",
        "win.ini",
        "report.txt",
        "env",
        "bellandescape.txt",
        "eviltxt.exe",
        "file",
        "a_b_c_d_e_.txt",
    ]
    on_disk = stored_objects(settings)
    assert sorted(path.name for path in on_disk) == sorted(item["id"] for item in data)
    for path in on_disk:
        assert path.resolve().is_relative_to(settings.files_dir.resolve())


async def test_long_file_name_is_shortened_keeping_its_extension(
    client: httpx.AsyncClient, account: Account
) -> None:
    item = await upload_one(client, account, "é" * 300 + ".txt", b"x")
    assert item["filename"].endswith(".txt")
    assert len(item["filename"].encode()) <= 255


# Refusals: all or nothing


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.txt", ELF),
        ("setup.txt", b"MZ\x90\x00\x03" + bytes(100)),
        ("app.txt", b"\xcf\xfa\xed\xfe" + bytes(100)),
        ("run.txt", b"#!/bin/sh\nrm -rf /\n"),
        ("data.txt", bytes(range(256))),
        ("page.txt", b"<!DOCTYPE html><script>alert(1)</script>"),
        ("logo.txt", b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>'),
    ],
    ids=["elf", "pe", "mach-o", "shebang", "binary", "html", "svg"],
)
async def test_refused_content_is_415_whatever_the_name(
    client: httpx.AsyncClient, account: Account, settings: Settings, name: str, content: bytes
) -> None:
    body = assert_problem(await upload(client, account, [(name, content)], status=415), 415)
    assert name in body["detail"]
    assert stored_objects(settings) == []


async def test_text_that_turns_binary_after_its_head_is_refused(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    content = b"looks like text\n" * 2000 + b"\x00\x01\x02 binary tail"
    assert_problem(await upload(client, account, [("log.txt", content)], status=415), 415)
    assert stored_objects(settings) == []


async def test_one_refused_file_keeps_none_of_the_upload(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    files = [("a.txt", b"fine\n"), ("b.png", PNG), ("c.txt", ELF), ("d.txt", b"never read\n")]
    assert_problem(await upload(client, account, files, status=415), 415)
    assert stored_objects(settings) == []
    listed = await client.get("/v1/files", headers=account.headers)
    assert listed.json()["data"] == []


async def test_too_many_files_is_422_and_keeps_nothing(
    limited: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    files = [(f"{i}.txt", b"text\n") for i in range(3)]
    body = assert_problem(await upload(limited, account, files, status=422), 422)
    assert body["errors"][0]["field"] == "files"
    assert stored_objects(settings) == []
    assert (await upload(limited, account, files[:2])).status_code == 201


async def test_oversize_file_is_413_and_leaves_nothing_on_disk(
    limited: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    files = [("small.txt", b"ok\n"), ("big.txt", b"x" * 5000)]
    body = assert_problem(await upload(limited, account, files, status=413), 413)
    assert "big.txt" in body["detail"]
    assert stored_objects(settings) == []
    exact = await upload(limited, account, [("exact.txt", b"y" * 4096)])
    assert exact.json()["data"][0]["size"] == 4096


async def test_oversize_upload_is_refused_while_streaming(
    limited: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    """The server stops reading at the limit; it does not swallow the rest of the body."""
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '.encode()
        yield b'filename="big.txt"\r\n\r\n'
        for _ in range(1000):
            sent += 1024
            yield b"z" * 1024
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    assert_problem(await post_raw(limited, account, body()), 413)
    assert sent < 16 * 1024
    assert stored_objects(settings) == []


async def test_form_fields_are_validated(client: httpx.AsyncClient, account: Account) -> None:
    cases: list[tuple[dict[str, str], str]] = [
        ({"metadata": "{not json"}, "metadata"),
        ({"metadata": "[1, 2]"}, "metadata"),
        ({"metadata": '{"x": NaN}'}, "metadata"),
        ({"purpose": "secret"}, "purpose"),
        ({"tags": "x" * 65}, "tags.0"),
        ({"tags": ",".join(f"t{i}" for i in range(21))}, "tags"),
        ({"unknown": "1"}, "unknown"),
    ]
    for fields, field in cases:
        response = await upload(client, account, [("a.txt", b"a\n")], status=422, form=fields)
        body = assert_problem(response, 422)
        assert field in {e["field"] for e in body["errors"]}, (fields, body)
    listed = await client.get("/v1/files", headers=account.headers)
    assert listed.json()["data"] == []


async def test_malformed_requests(client: httpx.AsyncClient, account: Account) -> None:
    no_files = raw_form([("purpose", None, b"document")])
    assert_problem(await post_raw(client, account, no_files), 422)
    urlencoded = await client.post("/v1/files", data={"purpose": "x"}, headers=account.headers)
    assert_problem(urlencoded, 415)
    as_json = await client.post("/v1/files", json={"files": []}, headers=account.headers)
    assert_problem(as_json, 415)
    truncated = raw_form([("files", "a.txt", b"abc")])[:-10]
    assert_problem(await post_raw(client, account, truncated), 400)
    wrong_field = raw_form([("file", "a.txt", b"abc")])
    assert_problem(await post_raw(client, account, wrong_field), 422)
    unauthenticated = await client.post("/v1/files", files=[("files", ("a.txt", b"a"))])
    assert_problem(unauthenticated, 401)


async def test_an_upload_that_breaks_off_keeps_nothing(
    app: FastAPI, account: Account, settings: Settings
) -> None:
    """The client disconnects in the middle of its second file: the first is removed too."""
    first = raw_form([("files", "first.txt", b"complete\n")])
    first = first.removesuffix(f"--{BOUNDARY}--\r\n".encode())
    second = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '
    second += 'filename="second.txt"\r\n\r\npartial'
    incoming: list[Message] = [
        {"type": "http.request", "body": first, "more_body": True},
        {"type": "http.request", "body": second.encode(), "more_body": True},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/files",
        "raw_path": b"/v1/files",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {account.access_token}".encode()),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 400
    assert stored_objects(settings) == []


async def test_idempotent_upload_is_replayed_not_repeated(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    key = {"Idempotency-Key": "upload-1"}
    files = [("a.txt", b"first\n"), ("b.txt", b"second\n")]
    first = await upload(client, account, files, headers=key)
    again = await upload(client, account, files, headers=key)
    assert again.json() == first.json()
    assert again.headers.get("idempotent-replayed") == "true"
    listed = await client.get("/v1/files", headers=account.headers)
    assert len(listed.json()["data"]) == 2
    assert len(stored_objects(settings)) == 2
    other = await upload(client, account, [("a.txt", b"other\n")], status=422, headers=key)
    assert assert_problem(other, 422)["errors"][0]["field"] == "Idempotency-Key"
    assert len(stored_objects(settings)) == 2


async def test_an_upload_key_is_bound_to_the_whole_form(
    server: Server, api: httpx.AsyncClient
) -> None:
    """Black box, on both deployments: the same key and form, even with another boundary,
    replay the first answer; another file's content or name, or another field, is a 422 and
    keeps nothing."""
    account = await sign_up(server.http)

    async def send(boundary: str, name: str, content: bytes, **fields: str) -> httpx.Response:
        return await api.post(
            "/v1/files",
            files=[("files", (name, content, "text/plain"))],
            data=fields,
            headers={
                **account.headers,
                "Idempotency-Key": "upload-1",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
            },
        )

    first = await send("first-boundary", "a.txt", b"first\n")
    assert first.status_code == 201, first.text
    again = await send("second-boundary", "a.txt", b"first\n")
    assert again.status_code == 201, again.text
    assert again.json() == first.json() and again.headers["idempotent-replayed"] == "true"
    for name, content, fields in [
        ("a.txt", b"second\n", {}),
        ("b.txt", b"first\n", {}),
        ("a.txt", b"first\n", {"purpose": "document"}),
    ]:
        refused = assert_problem(await send("first-boundary", name, content, **fields), 422)
        assert refused["errors"][0]["field"] == "Idempotency-Key"
    [stored] = first.json()["data"]
    listed = await api.get("/v1/files", headers=account.headers)
    assert [item["id"] for item in listed.json()["data"]] == [stored["id"]]
    download = await api.get(f"/v1/files/{stored['id']}/content", headers=account.headers)
    assert download.content == b"first\n"


async def test_other_routes_keep_the_app_wide_body_limit(
    client: httpx.AsyncClient, account: Account
) -> None:
    item = await upload_one(client, account, "a.txt", b"a\n")
    huge = {"metadata": {"blob": "x" * 2_000_000}}
    response = await client.patch(f"/v1/files/{item['id']}", json=huge, headers=account.headers)
    assert_problem(response, 413)


async def test_large_upload_streams_in_bounded_memory(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    """30 MB go through with a peak of Python allocations far below the file size."""
    chunk = b"0123456789abcdef" * 4096  # 64 KiB of text
    count = 480  # 30 MiB
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; '.encode()
        yield b'filename="big.txt"\r\n\r\n'
        for _ in range(count):
            yield chunk
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    for _ in range(count):
        digest.update(chunk)
    # The same request on a small file first: what its first run costs once (statements
    # compiled and prepared, the idempotency record's path) is not the upload's.
    warm_up = raw_form([("files", "small.txt", b"warm up\n")])
    for _ in range(2):  # the second is a replay
        answer = await post_raw(client, account, warm_up, {"Idempotency-Key": "warm-up"})
        assert answer.status_code == 201, answer.text

    async def peak_of_upload() -> tuple[httpx.Response, int]:
        """The response of the upload with an Idempotency-Key, and the peak of Python
        allocations while it ran."""
        tracemalloc.start()
        try:
            response = await post_raw(client, account, body(), {"Idempotency-Key": "big"})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return response, peak

    response, peak = await peak_of_upload()
    assert response.status_code == 201, response.text
    item = response.json()["data"][0]
    assert item["size"] == len(chunk) * count
    assert item["sha256"] == digest.hexdigest()
    # Measured: a few hundred KiB (one network chunk in a few copies), whatever the size.
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes for a {item['size']} byte upload"
    # A repeat is read through to compare its hash: in bounded memory too.
    replay, peak = await peak_of_upload()
    assert replay.headers.get("idempotent-replayed") == "true", replay.text
    assert peak < 2 * 1024 * 1024, f"peak {peak} bytes for a replayed upload"
    path = next(p for p in stored_objects(settings) if p.name == item["id"])
    assert path.stat().st_size == item["size"]


# List, filter, page


async def test_list_filters_by_purpose_tag_and_name(
    client: httpx.AsyncClient, account: Account
) -> None:
    report = await upload_one(
        client, account, "Q3 Report.md", b"# Q3\n", purpose="document", tags="finance,q3"
    )
    config = await upload_one(
        client, account, "agent.json", b"{}", purpose="agent_config", tags="ops"
    )
    photo = await upload_one(client, account, "photo.png", PNG, tags="finance")

    async def ids(**params: str) -> list[str]:
        response = await client.get("/v1/files", params=params, headers=account.headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["data"]]

    assert await ids() == [photo["id"], config["id"], report["id"]]
    assert await ids(order="asc") == [report["id"], config["id"], photo["id"]]
    assert await ids(purpose="agent_config") == [config["id"]]
    assert await ids(tag="finance") == [photo["id"], report["id"]]
    assert await ids(tag="fin") == []
    assert await ids(q="report") == [report["id"]]
    assert await ids(q="%") == []
    assert await ids(purpose="document", tag="finance") == [report["id"]]
    bad = await client.get("/v1/files", params={"purpose": "x"}, headers=account.headers)
    assert_problem(bad, 422)


async def test_cursor_paging_returns_every_file_once(
    client: httpx.AsyncClient, account: Account
) -> None:
    created = [(await upload_one(client, account, f"{i}.txt", b"x\n"))["id"] for i in range(5)]
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = (await client.get("/v1/files", params=params, headers=account.headers)).json()
        seen += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        params["after"] = page["next_cursor"]
    assert seen == list(reversed(created))
    bad = await client.get("/v1/files", params={"after": "prj_x"}, headers=account.headers)
    assert_problem(bad, 422)


# Patch and delete


async def test_patch_changes_names_tags_metadata_and_purpose(
    client: httpx.AsyncClient, account: Account
) -> None:
    item = await upload_one(client, account, "a.txt", b"a\n", tags="old")
    url = f"/v1/files/{item['id']}"
    response = await client.patch(
        url,
        json={
            "filename": "../renamed.md",
            "tags": [" new ", "new", "other"],
            "metadata": {"k": [1, 2]},
            "purpose": "document",
        },
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    patched = response.json()
    assert patched["filename"] == "renamed.md"
    assert patched["tags"] == ["new", "other"]
    assert patched["metadata"] == {"k": [1, 2]}
    assert patched["purpose"] == "document"
    assert patched["sha256"] == item["sha256"]
    assert patched["updated_at"] > item["updated_at"]
    assert (await client.get(url, headers=account.headers)).json() == patched

    only_tags = await client.patch(url, json={"tags": []}, headers=account.headers)
    assert only_tags.json()["tags"] == []
    assert only_tags.json()["filename"] == "renamed.md"

    for bad in (
        {"filename": None},
        {"filename": "../.."},
        {"purpose": "x"},
        {"tags": ["x" * 65]},
        {"metadata": [1]},
        {"size": 1},
    ):
        assert_problem(await client.patch(url, json=bad, headers=account.headers), 422)


async def test_delete_removes_the_row_and_the_content(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    keep = await upload_one(client, account, "keep.txt", b"keep\n")
    gone = await upload_one(client, account, "gone.txt", b"gone\n")
    assert {p.name for p in stored_objects(settings)} == {keep["id"], gone["id"]}

    response = await client.delete(f"/v1/files/{gone['id']}", headers=account.headers)
    assert response.status_code == 204
    assert [p.name for p in stored_objects(settings)] == [keep["id"]]
    for path in ("", "/content"):
        missing = await client.get(f"/v1/files/{gone['id']}{path}", headers=account.headers)
        assert_problem(missing, 404)
    again = await client.delete(f"/v1/files/{gone['id']}", headers=account.headers)
    assert_problem(again, 404)


async def test_changes_are_published_as_domain_events(
    app: FastAPI, client: httpx.AsyncClient, account: Account
) -> None:
    published = record_events(app).events
    item = await upload_one(client, account, "a.txt", b"a\n")
    await client.patch(f"/v1/files/{item['id']}", json={"tags": ["x"]}, headers=account.headers)
    await client.delete(f"/v1/files/{item['id']}", headers=account.headers)
    assert [(e.channel, e.event) for e in published] == [
        (f"user:{account.id}", "file.created"),
        (f"user:{account.id}", "file.updated"),
        (f"user:{account.id}", "file.deleted"),
    ]
    assert published[0].data["id"] == item["id"]
    assert published[1].data["tags"] == ["x"]


# Validate


async def validate(client: httpx.AsyncClient, account: Account, file_id: str) -> dict[str, Any]:
    response = await client.post(f"/v1/files/{file_id}/validate", headers=account.headers)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def checks(report: dict[str, Any]) -> dict[str, bool]:
    return {check["name"]: check["passed"] for check in report["checks"]}


def object_path(settings: Settings, file_id: str) -> Path:
    return next(p for p in stored_objects(settings) if p.name == file_id)


async def test_validate_accepts_intact_files_and_parses_configs(
    client: httpx.AsyncClient, account: Account
) -> None:
    config = await upload_one(
        client, account, "agent.json", b'{"runner": "echo"}', purpose="agent_config"
    )
    yaml_config = await upload_one(
        client, account, "agent.yaml", b"runner: echo\noptions:\n  delay_ms: 5\n"
    )
    image = await upload_one(client, account, "a.png", PNG)

    report = await validate(client, account, config["id"])
    assert report == {
        "file_id": config["id"],
        "valid": True,
        "checks": report["checks"],
        "errors": [],
    }
    assert checks(report) == {
        "content": True,
        "size": True,
        "sha256": True,
        "content_type": True,
        "parse": True,
        "agent_config": True,
    }
    assert checks(await validate(client, account, yaml_config["id"]))["parse"] is True
    assert "parse" not in checks(await validate(client, account, image["id"]))


async def test_validate_reports_broken_configs(client: httpx.AsyncClient, account: Account) -> None:
    broken = await upload_one(client, account, "bad.json", b'{"runner": ', purpose="agent_config")
    report = await validate(client, account, broken["id"])
    assert report["valid"] is False
    assert checks(report)["parse"] is False
    assert report["errors"] and report["errors"][0].startswith("parse:")

    scalar = await upload_one(client, account, "list.yaml", b"- a\n- b\n", purpose="agent_config")
    report = await validate(client, account, scalar["id"])
    assert checks(report) | {"agent_config": False} == checks(report)
    assert report["valid"] is False


async def test_validate_detects_content_corrupted_or_lost_on_disk(
    client: httpx.AsyncClient, account: Account, settings: Settings
) -> None:
    item = await upload_one(client, account, "notes.txt", b"original content\n")
    path = object_path(settings, item["id"])

    path.write_bytes(b"tampered content\n")
    report = await validate(client, account, item["id"])
    assert report["valid"] is False
    assert checks(report) == {
        "content": True,
        "size": True,
        "sha256": False,
        "content_type": True,
    }

    path.write_bytes(ELF)
    report = await validate(client, account, item["id"])
    assert checks(report)["content_type"] is False
    assert checks(report)["size"] is False

    path.unlink()
    report = await validate(client, account, item["id"])
    assert report["valid"] is False
    assert checks(report) == {"content": False}
    lost = await client.get(f"/v1/files/{item['id']}/content", headers=account.headers)
    assert_problem(lost, 404)


# Stats and isolation


async def test_stats_count_files_and_bytes(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory
) -> None:
    empty = await client.get("/v1/files/stats", headers=account.headers)
    assert empty.json() == {"count": 0, "total_bytes": 0, "by_purpose": {}, "by_content_type": {}}
    await upload(
        client, account, [("a.txt", b"12345"), ("b.png", PNG)], form={"purpose": "document"}
    )
    await upload_one(client, account, "c.json", b"{}", purpose="agent_config")
    other = await make_account()
    await upload_one(client, other, "other.txt", b"not counted")

    stats = (await client.get("/v1/files/stats", headers=account.headers)).json()
    assert stats == {
        "count": 3,
        "total_bytes": 5 + len(PNG) + 2,
        "by_purpose": {
            "agent_config": {"count": 1, "bytes": 2},
            "document": {"count": 2, "bytes": 5 + len(PNG)},
        },
        "by_content_type": {
            "application/json": {"count": 1, "bytes": 2},
            "image/png": {"count": 1, "bytes": len(PNG)},
            "text/plain": {"count": 1, "bytes": 5},
        },
    }


async def test_another_users_file_is_invisible(
    client: httpx.AsyncClient, account: Account, make_account: AccountFactory, settings: Settings
) -> None:
    item = await upload_one(client, account, "private.txt", b"mine\n", tags="secret")
    intruder = await make_account()
    url = f"/v1/files/{item['id']}"
    h = intruder.headers
    assert_problem(await client.get(url, headers=h), 404)
    assert_problem(await client.get(f"{url}/content", headers=h), 404)
    assert_problem(await client.patch(url, json={"tags": []}, headers=h), 404)
    assert_problem(await client.post(f"{url}/validate", headers=h), 404)
    assert_problem(await client.delete(url, headers=h), 404)
    listed = await client.get("/v1/files", params={"tag": "secret"}, headers=h)
    assert listed.json()["data"] == []
    assert (await client.get("/v1/files/stats", headers=h)).json()["count"] == 0

    still = await client.get(f"{url}/content", headers=account.headers)
    assert still.content == b"mine\n"
    assert len(stored_objects(settings)) == 1


async def test_metadata_json_round_trips_unicode(
    client: httpx.AsyncClient, account: Account
) -> None:
    metadata = {"title": "Über 文件", "nested": {"list": [1, 2.5, True, None]}}
    item = await upload_one(client, account, "a.txt", b"a\n", metadata=json.dumps(metadata))
    assert item["metadata"] == metadata
