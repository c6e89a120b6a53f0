"""A streaming `multipart/form-data` reader: one part at a time, file data chunk by chunk.

Starlette's `request.form()` spools every file to a temporary file before the handler runs,
so a refused or oversized upload is only noticed once it has been written in full, and each
file is written twice. This reader drives python-multipart's push parser from the request
stream instead: the caller pulls `parts()` and each part's `chunks()`, and nothing is read
from the network faster than the caller consumes it. Memory stays at one network chunk.

The reader also hashes the form as it goes (each part's name, file name and content, in
order), for an `Idempotency-Key`: the raw bytes would not do, as a client that sends the same
form again usually picks a new boundary.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum, auto

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from agenthub.core.errors import BadRequest, PayloadTooLarge

FORM_DATA = b"multipart/form-data"


class _Event(Enum):
    PART_BEGIN = auto()
    HEADER = auto()
    HEADERS_DONE = auto()
    DATA = auto()
    PART_END = auto()
    END = auto()


@dataclass
class Part:
    """One form field (`filename` is None) or one file of the body."""

    name: str
    filename: str | None
    headers: dict[str, str]
    _reader: MultipartReader = field(repr=False)

    def chunks(self) -> AsyncIterator[bytes]:
        """The part's content as it arrives; may be read once."""
        return self._reader._part_data()

    async def read(self, limit: int) -> bytes:
        """The whole content of a small part; 413 beyond `limit` bytes."""
        data = bytearray()
        async for chunk in self.chunks():
            data += chunk
            if len(data) > limit:
                raise PayloadTooLarge(f"Form field {self.name!r} exceeds {limit} bytes.")
        return bytes(data)


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a `multipart/form-data` content type; None for anything else."""
    media_type, options = parse_options_header(content_type)
    if media_type != FORM_DATA:
        return None
    return options.get(b"boundary") or None


class MultipartReader:
    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        self._body = body
        self._events: deque[tuple[_Event, bytes, bytes]] = deque()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._exhausted = False
        self._ended = False
        self._in_part = False
        self._form_digest = hashlib.sha256()
        self._part_digest = hashlib.sha256()
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": lambda: self._push(_Event.PART_BEGIN),
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": lambda: self._push(_Event.HEADERS_DONE),
                    "on_part_data": self._on_part_data,
                    "on_part_end": lambda: self._push(_Event.PART_END),
                    "on_end": lambda: self._push(_Event.END),
                },
            )
        except (FormParserError, ValueError) as exc:
            raise BadRequest("The multipart boundary is invalid.") from exc

    async def parts(self) -> AsyncIterator[Part]:
        """Each part in body order; the rest of a part the caller did not read is skipped."""
        while not self._ended:
            event, _, _ = await self._next()
            if event is _Event.END:
                self._ended = True
                return
            if event is not _Event.PART_BEGIN:
                raise _malformed()
            headers: dict[str, str] = {}
            while (item := await self._next())[0] is _Event.HEADER:
                # Latin-1 keeps the raw bytes; names inside are decoded as UTF-8 later.
                headers[item[1].decode("latin-1").lower()] = item[2].decode("latin-1")
            if item[0] is not _Event.HEADERS_DONE:
                raise _malformed()
            part = _part(self, headers)
            self._in_part = True
            self._part_digest = hashlib.sha256()
            for label in (part.name, part.filename):
                self._form_digest.update(_framed(label))
            yield part
            async for _ in self._part_data():
                pass

    async def digest(self) -> str:
        """The SHA-256 of the whole form, reading (and skipping) what is left of the body."""
        async for _ in self.parts():
            pass
        return self._form_digest.hexdigest()

    async def _part_data(self) -> AsyncIterator[bytes]:
        while self._in_part:
            event, data, _ = await self._next()
            if event is _Event.DATA:
                self._part_digest.update(data)
                yield data
            elif event is _Event.PART_END:
                self._in_part = False
                self._form_digest.update(self._part_digest.digest())
            else:
                raise _malformed()

    async def _next(self) -> tuple[_Event, bytes, bytes]:
        while not self._events:
            if self._exhausted:
                raise BadRequest("The multipart body ended before its closing boundary.")
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._exhausted = True
                continue
            try:
                self._parser.write(chunk)
            except FormParserError as exc:
                raise _malformed() from exc
        return self._events.popleft()

    def _push(self, event: _Event, data: bytes = b"", extra: bytes = b"") -> None:
        self._events.append((event, data, extra))

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._push(_Event.HEADER, bytes(self._header_name), bytes(self._header_value))
        self._header_name.clear()
        self._header_value.clear()

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._push(_Event.DATA, data[start:end])


def _part(reader: MultipartReader, headers: dict[str, str]) -> Part:
    disposition, options = parse_options_header(headers.get("content-disposition", ""))
    name = options.get(b"name")
    if disposition != b"form-data" or name is None:
        raise BadRequest('Each part needs "Content-Disposition: form-data" with a name.')
    filename = options.get(b"filename")
    return Part(
        name=_decode(name),
        filename=None if filename is None else _decode(filename),
        headers=headers,
        _reader=reader,
    )


def _framed(label: str | None) -> bytes:
    """`label` for a hash, unambiguously: absent, or its length and its bytes."""
    if label is None:
        return b"\x00"
    raw = label.encode()
    return b"\x01" + len(raw).to_bytes(8, "big") + raw


def _decode(raw: bytes) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _malformed() -> BadRequest:
    return BadRequest("The multipart body is malformed.")
