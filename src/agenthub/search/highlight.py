"""Highlighted snippets that are safe to render as HTML.

The database marks matches with markers that carry a random nonce (FTS5 `snippet()`,
PostgreSQL `ts_headline`); `render` HTML-escapes the text and turns the markers into
`<mark>…</mark>`. Stored text cannot forge a marker, because it cannot know the nonce.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from html import escape

MARK_OPEN = "<mark>"
MARK_CLOSE = "</mark>"


def _nonce() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Markers:
    """Start and stop markers for one query; alphanumeric, so no option syntax needs quoting."""

    nonce: str = field(default_factory=_nonce)

    @property
    def open(self) -> str:
        return f"hl{self.nonce}s"

    @property
    def close(self) -> str:
        return f"hl{self.nonce}e"

    def render(self, raw: str | None) -> str:
        """`raw` HTML-escaped, its marked matches wrapped in `<mark>`."""
        if not raw:
            return ""
        first, *marked = raw.split(self.open)
        out = [escape(first, quote=True)]
        for piece in marked:
            hit, _, rest = piece.partition(self.close)
            out.append(f"{MARK_OPEN}{escape(hit, quote=True)}{MARK_CLOSE}")
            out.append(escape(rest.replace(self.close, ""), quote=True))
        return "".join(out)
