"""File names as clients send them, made safe to store and to hand back in a header.

A name is display data only: storage keys come from file ids, so a name can never choose a
path. It is still cleaned, because it is shown to people and downloaded to their disks.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

MAX_NAME_BYTES = 255
MAX_SUFFIX_CHARS = 16
FALLBACK_NAME = "file"

# Control, format (bidi overrides such as U+202E), surrogate and separator characters.
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Characters that some file systems refuse; replaced so the name survives a download.
_RESERVED = re.compile(r'[<>:"|?*]')
_SPACES = re.compile(r"\s+")
# RFC 5987 attr-char, beyond letters and digits.
_ATTR_SAFE = "!#$&+-.^_`|~"


def sanitize_filename(raw: str) -> str:
    """The last path segment of `raw`: runs of whitespace as one space, without other control
    characters, leading dots or reserved
    characters, at most 255 UTF-8 bytes (keeping the extension); empty when nothing is left."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = _SPACES.sub(" ", _RESERVED.sub("_", name))
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    name = name.lstrip(". ").rstrip(". ")
    return _truncate(name)


def _truncate(name: str) -> str:
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem or len(suffix) > MAX_SUFFIX_CHARS:
        stem, suffix = name, ""
    tail = f".{suffix}" if suffix else ""
    budget = MAX_NAME_BYTES - len(tail.encode())
    cut = stem.encode()[:budget].decode(errors="ignore").rstrip(". ")
    return cut + tail


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII `filename` and, for other names, RFC 6266 `filename*`."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 else "_" for ch in filename)
    fallback = fallback.replace("\\", "_").replace('"', "_") or FALLBACK_NAME
    header = f'attachment; filename="{fallback}"'
    if fallback != filename:
        header += f"; filename*=UTF-8''{quote(filename, safe=_ATTR_SAFE)}"
    return header
