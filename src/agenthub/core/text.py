"""Valid Unicode text: lone UTF-16 surrogates are refused where text comes in and replaced
where it goes out.

JSON can spell a lone surrogate (`"\\ud800"`) and Python decodes it into a `str` that no UTF-8
encoder accepts, so once stored such a string breaks every reader: a response, a WebSocket
frame. Input is checked once, at the edge: `surrogate_in` walks a decoded value only when the
quick scan of its JSON text (`may_hold_surrogate`) cannot rule a surrogate out. Serialized
output goes through `valid_text`, so a value that got in anyway (stored before the check
existed, written straight into Redis) is sent with U+FFFD in its place.
"""

from __future__ import annotations

import re
from typing import Any

from agenthub.core.errors import FieldError, ValidationFailed

Path = tuple[str | int, ...]

# JSON's escape for a surrogate (`\uD800`-`\uDFFF`, paired or not); in bytes, also UTF-8's
# encoding of a surrogate (ED A0-BF ..), which `json.loads` decodes with `surrogatepass`. Each
# pattern starts with a literal, which `re` finds with a fast scan.
_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_ESCAPE_BYTES = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_ENCODED_BYTES = re.compile(rb"\xed[\xa0-\xbf]")
_NOT_UTF8 = (b"\xef", b"\xfe", b"\xff")  # first byte of a byte order mark
_SURROGATE = re.compile("[\ud800-\udfff]")
LONE_SURROGATE = "must be valid Unicode text, without a lone surrogate (\\ud800-\\udfff)"


def may_hold_surrogate(text: str | bytes) -> bool:
    """Whether JSON `text` could decode to a string holding a surrogate: a quick scan that
    errs only towards yes (an escaped pair, which decodes to one character, also says yes).

    Text decoded from UTF-8 (a WebSocket frame, a column) cannot hold a surrogate itself,
    only the escape. Bytes in another encoding (a byte order mark, or a NUL among the first
    bytes, as `json.loads` detects UTF-16 and UTF-32) always say yes."""
    if isinstance(text, str):
        return "\\u" in text and _ESCAPE.search(text) is not None
    return (
        (b"\\u" in text and _ESCAPE_BYTES.search(text) is not None)
        or (b"\xed" in text and _ENCODED_BYTES.search(text) is not None)
        or text[:1] in _NOT_UTF8
        or b"\x00" in text[:4]
    )


def has_surrogate(text: str) -> bool:
    """Whether `text` holds a surrogate code point (which UTF-8 cannot encode)."""
    if text.isascii():
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def surrogate_path(value: Any) -> Path | None:
    """Where the first string or key holding a surrogate is in a decoded JSON value (`()` for
    the value itself, `("a", 0)` for the first item of `a`), or None if there is none.

    Iterative: a value nested as deep as `json.loads` allows must not exhaust the stack."""
    stack: list[tuple[Path, Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if has_surrogate(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and has_surrogate(key):
                    return (*path, key)
                stack.append(((*path, key), child))
        elif isinstance(item, list):
            stack.extend(((*path, index), child) for index, child in enumerate(item))
    return None


def surrogate_in(text: str | bytes, value: Any) -> Path | None:
    """`surrogate_path` of `value`, decoded from the JSON `text`; not walked when the quick scan
    of `text` rules a surrogate out."""
    return surrogate_path(value) if may_hold_surrogate(text) else None


def dotted(path: Path) -> str:
    """`path` as a field name (`metadata.tags.0`; empty for the value itself), with its own
    surrogates replaced so that it can be shown."""
    return valid_text(".".join(str(part) for part in path))


def not_unicode(field: str, what: str) -> ValidationFailed:
    """The 422 for a lone surrogate in `field` of `what` ("The request body")."""
    return ValidationFailed(
        f"{what} holds text that is not valid Unicode.",
        errors=[FieldError(field=field, message=LONE_SURROGATE)],
    )


def valid_text(text: str) -> str:
    """`text` with each surrogate replaced by U+FFFD; `text` itself when it has none."""
    return _SURROGATE.sub("\ufffd", text) if has_surrogate(text) else text
