"""Opaque, time-sortable ids with a type prefix (`usr_01J...`).

The body is a ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32, so ids
sort by creation time as plain strings and keyset pagination can order by id alone.
"""

from __future__ import annotations

import re
import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_BODY = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")

PREFIXES = frozenset(
    {
        "usr",
        "prj",
        "agt",
        "ses",
        "msg",
        "tex",
        "job",
        "wfl",
        "fil",
        "key",
        "con",
        "ide",
        "rtk",
        "lgn",
        "aud",
    }
)


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


class _Monotonic:
    """Within one process, each id sorts after the previous one even in the same millisecond
    (the random part is incremented), so rows created in a burst keep their creation order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = 0
        self._last_rand = 0

    def next(self) -> tuple[int, int]:
        with self._lock:
            ms = time.time_ns() // 1_000_000
            if ms <= self._last_ms and self._last_rand < _RAND_MAX:
                self._last_rand += 1
            else:
                self._last_ms, self._last_rand = max(ms, self._last_ms), secrets.randbits(79)
            return self._last_ms, self._last_rand


_RAND_MAX = (1 << 80) - 1
_clock = _Monotonic()


def new_id(prefix: str, at_ms: int | None = None) -> str:
    """A new id such as `usr_01JD3...`; `at_ms` pins the time part (for bulk back-fills)."""
    ms, rand = _clock.next() if at_ms is None else (at_ms, secrets.randbits(80))
    return f"{prefix}_{_encode(ms, 10)}{_encode(rand, 16)}"


def is_valid(value: str, prefix: str) -> bool:
    """True when `value` is shaped like an id of this prefix."""
    head, sep, body = value.partition("_")
    return sep == "_" and head == prefix and bool(_BODY.match(body))
