"""Free-form JSON that clients store (metadata, runner options): JSON types only, bounded.

Python's `json` accepts `NaN` and `Infinity`, which PostgreSQL refuses in a JSON column and
no response can render; YAML adds dates, bytes, sets and non-string keys. `plain_json`
turns such input into a 422 (dates become ISO strings) instead of a 500, and bounds nesting
and size so that an alias-expanding YAML document cannot grow without limit.
"""

from __future__ import annotations

import json
import math
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator

MAX_DEPTH = 32
MAX_NODES = 10_000
MAX_OBJECT_BYTES = 65_536


class NotPlainJson(ValueError):
    """The value holds something JSON cannot represent, or is too large."""


def plain_json(value: Any, *, max_nodes: int = MAX_NODES) -> Any:
    """A copy of `value` made of JSON types only; `NotPlainJson` names the offending path."""
    budget = max_nodes

    def walk(item: Any, path: str, depth: int) -> Any:
        nonlocal budget
        budget -= 1
        if budget < 0:
            raise NotPlainJson(f"more than {max_nodes} values")
        if depth > MAX_DEPTH:
            raise NotPlainJson(f"{path}: nested more than {MAX_DEPTH} levels deep")
        if item is None or isinstance(item, bool | int | str):
            return item
        if isinstance(item, float):
            if not math.isfinite(item):
                raise NotPlainJson(f"{path}: numbers must be finite")
            return item
        if isinstance(item, date):
            return item.isoformat()
        if isinstance(item, dict):
            result: dict[str, Any] = {}
            for key, child in item.items():
                if not isinstance(key, str):
                    raise NotPlainJson(f"{path}: keys must be strings, not {type(key).__name__}")
                result[key] = walk(child, f"{path}.{key}", depth + 1)
            return result
        if isinstance(item, list | tuple):
            return [walk(child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item)]
        raise NotPlainJson(f"{path}: {type(item).__name__} values are not supported")

    return walk(value, "$", 0)


def _json_object(value: dict[str, Any]) -> dict[str, Any]:
    plain: dict[str, Any] = plain_json(value)
    size = len(json.dumps(plain, separators=(",", ":")).encode())
    if size > MAX_OBJECT_BYTES:
        raise NotPlainJson(f"must stay under {MAX_OBJECT_BYTES} bytes as JSON, got {size}")
    return plain


JsonObject = Annotated[dict[str, Any], AfterValidator(_json_object)]
"""A JSON object field: finite numbers, string keys, at most 64 KiB serialized."""
