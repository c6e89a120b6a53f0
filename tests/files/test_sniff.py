"""Content sniffing: types come from the bytes; text is checked to its last byte."""

from __future__ import annotations

import re

import pytest

from agenthub.config import DEFAULT_ALLOWED_FILE_TYPES
from agenthub.core.errors import UnsupportedMediaType
from agenthub.files.sniff import HEAD_BYTES, Sniffer

ALLOWED = frozenset(DEFAULT_ALLOWED_FILE_TYPES)


def sniff(name: str, *chunks: bytes, allowed: frozenset[str] = ALLOWED) -> str:
    sniffer = Sniffer(name, allowed)
    for chunk in chunks:
        sniffer.feed(chunk)
    return sniffer.finish()


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("a.txt", b"hello\n", "text/plain"),
        ("a", b"", "text/plain"),
        ("a.bin", "naïve café\n".encode(), "text/plain"),
        ("a.md", b"# x", "text/markdown"),
        ("a.markdown", b"# x", "text/markdown"),
        ("a.CSV", b"a,b", "text/csv"),
        ("a.yml", b"a: 1", "application/x-yaml"),
        ("a.json", b"not json at all", "application/json"),
        ("noext", b'{"a": [1, 2]}', "application/json"),
        ("noext", b"\xef\xbb\xbf[1, 2]", "application/json"),
        ("noext", b"[link](http://x) is markdown", "text/plain"),
        ("a.txt", b'{"a": 1}', "text/plain"),
        ("x.txt", b"%PDF-1.4 ...", "application/pdf"),
        ("x.txt", b"\x89PNG\r\n\x1a\n....", "image/png"),
        ("x.txt", b"\xff\xd8\xff\xdb", "image/jpeg"),
        ("x.txt", b"GIF87a...", "image/gif"),
        ("x.txt", b"RIFF\x00\x00\x00\x00WEBPVP8L", "image/webp"),
        ("x.txt", b"PK\x03\x04\x14\x00", "application/zip"),
    ],
)
def test_types_come_from_content(name: str, content: bytes, expected: str) -> None:
    assert sniff(name, content) == expected


def test_a_long_json_document_is_recognised_by_its_start() -> None:
    body = b'{"items": [' + b"1, " * HEAD_BYTES + b"1]}"
    assert sniff("data", body[:100], body[100:]) == "application/json"


@pytest.mark.parametrize(
    "content",
    [
        b"\x7fELF\x02\x01",
        b"MZ\x90\x00",
        b"\xfe\xed\xfa\xce",
        b"\xca\xfe\xba\xbe",
        b"\x00asm\x01\x00",
        b"#!/usr/bin/env python\n",
        b"\xef\xbb\xbf#!/bin/sh\n",
    ],
)
def test_executables_are_refused(content: bytes) -> None:
    with pytest.raises(UnsupportedMediaType, match="executable"):
        sniff("innocent.txt", content)


@pytest.mark.parametrize(
    "chunks",
    [
        (b"\x00\x01\x02\x03",),
        (b"text", b"\x00"),
        (b"caf\xc3",),  # truncated UTF-8 sequence at the end
        (b"a" * HEAD_BYTES, b"b" * 100, b"\xff"),
        (b"\x1b[31mred\x1b[0m",),
        ("ok".encode("utf-16"),),
    ],
)
def test_non_text_without_a_known_format_is_refused(chunks: tuple[bytes, ...]) -> None:
    with pytest.raises(UnsupportedMediaType, match="neither UTF-8 text"):
        sniff("a.txt", *chunks)


def test_multibyte_characters_split_across_chunks_are_text() -> None:
    encoded = "é".encode() * (HEAD_BYTES)
    assert sniff("a.txt", encoded[: HEAD_BYTES + 1], encoded[HEAD_BYTES + 1 :]) == "text/plain"


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (b"<!doctype html><p>x", "text/html"),
        (b"  <html>\n", "text/html"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml"),
        (b"<?xml version='1.0'?>\n<!-- c -->\n<svg>", "image/svg+xml"),
        (b"<?xml version='1.0'?><root/>", "application/xml"),
    ],
)
def test_markup_is_named_and_refused_unless_allowed(content: bytes, kind: str) -> None:
    with pytest.raises(UnsupportedMediaType, match=re.escape(kind)):
        sniff("page.txt", content)
    assert sniff("page.txt", content, allowed=ALLOWED | {kind}) == kind


def test_the_allow_list_is_configurable() -> None:
    with pytest.raises(UnsupportedMediaType, match="image/png"):
        sniff("a.png", b"\x89PNG\r\n\x1a\n", allowed=frozenset({"text/plain"}))


def test_refusal_happens_once_the_head_has_arrived() -> None:
    sniffer = Sniffer("a.txt", ALLOWED)
    sniffer.feed(b"\x00" * (HEAD_BYTES - 1))
    with pytest.raises(UnsupportedMediaType):
        sniffer.feed(b"\x00")
