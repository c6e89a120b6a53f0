"""Content sniffing: what a file is, decided by its bytes, never by the client's word.

Binary formats are recognised by their magic bytes; anything else must be UTF-8 text without
control characters, checked over the whole stream, not only its start. Executables (ELF, PE,
Mach-O, `#!` scripts) and unrecognised content are refused, and so is any type outside the
configured allow-list. The file name only chooses between the text flavours (Markdown, CSV,
YAML), which a byte pattern cannot tell apart.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Collection
from pathlib import PurePosixPath

from agenthub.config import DEFAULT_ALLOWED_FILE_TYPES
from agenthub.core.errors import UnsupportedMediaType

HEAD_BYTES = 8192
UTF8_BOM = b"\xef\xbb\xbf"

TEXT_TYPES = frozenset(
    {"text/plain", "text/markdown", "text/csv", "application/json", "application/x-yaml"}
)
# Every type sniffing can name, allowed or not (the download route documents these).
KNOWN_TYPES = (*DEFAULT_ALLOWED_FILE_TYPES, "text/html", "image/svg+xml", "application/xml")

_EXECUTABLES: tuple[tuple[bytes, str], ...] = (
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows (PE/DOS) executable"),
    (b"\xfe\xed\xfa\xce", "a Mach-O executable"),
    (b"\xfe\xed\xfa\xcf", "a Mach-O executable"),
    (b"\xce\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xcf\xfa\xed\xfe", "a Mach-O executable"),
    (b"\xca\xfe\xba\xbe", "a Mach-O universal binary or Java class"),
    (b"\x00asm", "a WebAssembly module"),
    (b"#!", "a script with an interpreter line (#!)"),
)
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"PK\x03\x04", "application/zip"),
    (b"PK\x05\x06", "application/zip"),
    (b"PK\x07\x08", "application/zip"),
)
_TEXT_BY_SUFFIX = {
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".csv": "text/csv",
    ".json": "application/json",
    ".yaml": "application/x-yaml",
    ".yml": "application/x-yaml",
}
# C0 controls other than tab, line feed, form feed and carriage return; DEL.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_JSON_START = re.compile(rb"^\s*(\{\s*[\"}]|\[\s*[\[{\"\d\-tfn\]])")
_MARKUP = (
    (re.compile(rb"^\s*<!doctype\s+html", re.IGNORECASE), "text/html"),
    (re.compile(rb"^\s*<(html|head|body|script|iframe)[\s>]", re.IGNORECASE), "text/html"),
    (re.compile(rb"^\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<svg[\s>]", re.I | re.S), "image/svg+xml"),
    (re.compile(rb"^\s*<\?xml\s", re.IGNORECASE), "application/xml"),
)


class Sniffer:
    """Fed a file's chunks in order, names its content type or raises 415.

    `feed` decides as soon as `HEAD_BYTES` have arrived (so a refused upload stops early)
    and keeps checking that text stays text; `finish` decides for shorter files and returns
    the type. Memory stays at one head and one chunk.
    """

    def __init__(self, filename: str, allowed: Collection[str]) -> None:
        self.filename = filename
        self.allowed = allowed
        self.content_type: str | None = None
        self._buffer = bytearray()
        self._text = False
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunk: bytes) -> None:
        if self.content_type is None:
            self._buffer += chunk
            if len(self._buffer) >= HEAD_BYTES:
                self._decide(complete=False)
        elif self._text:
            self._check_text(chunk)

    def finish(self) -> str:
        content_type = self.content_type or self._decide(complete=True)
        if self._text:
            self._check_text(b"", final=True)
        return content_type

    def _decide(self, *, complete: bool) -> str:
        data = bytes(self._buffer)
        self._buffer = bytearray()
        head = data[:HEAD_BYTES]
        if executable := _executable(head):
            raise UnsupportedMediaType(
                f"{self.filename}: the content is {executable}; executables are not accepted."
            )
        content_type = _binary_type(head)
        if content_type is None:
            self._text = True
            self._check_text(data, final=complete)
            content_type = _text_type(head, self.filename, complete=complete)
        if content_type not in self.allowed:
            raise UnsupportedMediaType(
                f"{self.filename}: content of type {content_type} is not accepted."
            )
        self.content_type = content_type
        return content_type

    def _check_text(self, chunk: bytes, *, final: bool = False) -> None:
        try:
            self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            raise self._unrecognised() from exc
        if _CONTROL.search(chunk):
            raise self._unrecognised()

    def _unrecognised(self) -> UnsupportedMediaType:
        return UnsupportedMediaType(
            f"{self.filename}: the content is neither UTF-8 text nor an accepted file format."
        )


def _executable(head: bytes) -> str | None:
    """What kind of executable the content is, if it is one."""
    body = head.removeprefix(UTF8_BOM)
    return next((what for magic, what in _EXECUTABLES if body.startswith(magic)), None)


def _binary_type(head: bytes) -> str | None:
    """The type of a recognised binary format."""
    for magic, content_type in _SIGNATURES:
        if head.startswith(magic):
            return content_type
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _text_type(head: bytes, filename: str, *, complete: bool) -> str:
    """The flavour of text: markup is named (and usually refused), then the name decides."""
    body = head.removeprefix(UTF8_BOM)
    for pattern, markup_type in _MARKUP:
        if pattern.match(body):
            return markup_type
    suffix = PurePosixPath(filename.lower()).suffix
    if suffix in _TEXT_BY_SUFFIX:
        return _TEXT_BY_SUFFIX[suffix]
    if _looks_like_json(body, complete=complete):
        return "application/json"
    return "text/plain"


def _looks_like_json(body: bytes, *, complete: bool) -> bool:
    if complete:
        try:
            json.loads(body)
        except ValueError:
            return False
        return body.lstrip()[:1] in (b"{", b"[")
    return _JSON_START.match(body) is not None
