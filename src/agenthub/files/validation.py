"""Re-validation of a stored file: its content re-read and checked against its record."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Collection
from typing import Any

from agenthub.core.errors import UnsupportedMediaType
from agenthub.db.models.files import StoredFile
from agenthub.files.schemas import ValidationCheck, ValidationReport
from agenthub.files.sniff import TEXT_TYPES, Sniffer
from agenthub.files.storage import ObjectNotFound, Storage

# JSON/YAML content is parsed up to this size (the parsed document takes many times more
# memory). A larger agent config fails validation; a larger JSON/YAML document is not parsed.
MAX_PARSE_BYTES = 4 * 1024 * 1024
PARSED_TYPES = frozenset({"application/json", "application/x-yaml"})


async def validate_file(
    storage: Storage, row: StoredFile, allowed_types: Collection[str]
) -> ValidationReport:
    """Re-read the content: still present, same size and sha256, still an accepted type, and
    for agent configs and JSON/YAML documents (up to `MAX_PARSE_BYTES`), still parseable."""
    checks: list[ValidationCheck] = []
    try:
        reader = await storage.open(row.storage_key)
    except ObjectNotFound:
        checks.append(ValidationCheck(name="content", passed=False, detail="missing from storage"))
        return _report(row, checks)
    checks.append(ValidationCheck(name="content", passed=True))
    wants_parse = row.purpose == "agent_config" or row.content_type in PARSED_TYPES
    kept: bytearray | None = bytearray() if wants_parse else None
    sniffer = Sniffer(row.filename, allowed_types)
    refused: str | None = None
    digest = hashlib.sha256()
    size = 0
    async for chunk in reader.chunks:
        size += len(chunk)
        await asyncio.to_thread(digest.update, chunk)
        if refused is None:
            refused = _sniff_step(sniffer, chunk)
        if kept is not None and len(kept) + len(chunk) > MAX_PARSE_BYTES:
            kept = None
        elif kept is not None:
            kept += chunk
    sniffed = sniffer.content_type
    if refused is None:
        refused = _sniff_step(sniffer, None)
        sniffed = sniffer.content_type
    checks.append(_check("size", size == row.size, f"{size} bytes stored, {row.size} recorded"))
    checks.append(_check("sha256", digest.hexdigest() == row.sha256, "content changed"))
    checks.append(_type_check(row.content_type, sniffed, refused))
    if kept is not None or row.purpose == "agent_config":
        checks.extend(await _parse_checks(row, kept))
    return _report(row, checks)


def _sniff_step(sniffer: Sniffer, chunk: bytes | None) -> str | None:
    """Feed (or finish, for None) the sniffer; the refusal as text instead of a raise."""
    try:
        if chunk is None:
            sniffer.finish()
        else:
            sniffer.feed(chunk)
    except UnsupportedMediaType as exc:
        return exc.detail or exc.title
    return None


def _type_check(recorded: str, sniffed: str | None, refused: str | None) -> ValidationCheck:
    if refused is not None:
        return ValidationCheck(name="content_type", passed=False, detail=refused)
    same = sniffed == recorded or (sniffed in TEXT_TYPES and recorded in TEXT_TYPES)
    detail = None if same else f"content is now {sniffed}, recorded as {recorded}"
    return ValidationCheck(name="content_type", passed=same, detail=detail)


async def _parse_checks(row: StoredFile, kept: bytearray | None) -> list[ValidationCheck]:
    if kept is None:
        detail = f"larger than {MAX_PARSE_BYTES} bytes, not parsed"
        return [ValidationCheck(name="parse", passed=False, detail=detail)]
    import yaml  # only when a file is validated: not at start-up

    try:
        document = await asyncio.to_thread(_parse, bytes(kept), row.content_type)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [ValidationCheck(name="parse", passed=False, detail=detail[:500])]
    checks = [ValidationCheck(name="parse", passed=True)]
    if row.purpose == "agent_config":
        is_object = isinstance(document, dict)
        checks.append(_check("agent_config", is_object, "the top level must be an object"))
    return checks


def _parse(content: bytes, content_type: str) -> Any:
    text = content.decode("utf-8-sig")
    if content_type == "application/json":
        return json.loads(text)
    if content_type not in TEXT_TYPES:
        raise ValueError(f"{content_type} content is not a JSON or YAML document")
    import yaml

    return yaml.safe_load(text)


def _check(name: str, passed: bool, failure: str) -> ValidationCheck:
    return ValidationCheck(name=name, passed=passed, detail=None if passed else failure)


def _report(row: StoredFile, checks: list[ValidationCheck]) -> ValidationReport:
    errors = [f"{c.name}: {c.detail}" for c in checks if not c.passed]
    return ValidationReport(file_id=row.id, valid=not errors, checks=checks, errors=errors)
