"""`GET /status`: the status page, one HTML file with its style and script inline.

Everyone sees the public summary (the page polls `GET /v1/health`); an administrator, signed
in or giving a token in the URL fragment, gets live metrics over `/v1/ws` on the `system`
channel. The page's own Content-Security-Policy allows exactly its inline blocks (by hash),
same-origin requests and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter
from starlette.responses import HTMLResponse

router = APIRouter(tags=["monitoring"])

ASSET = "status.html"
_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)


@dataclass(frozen=True)
class Page:
    html: str
    policy: str  # Content-Security-Policy


@cache
def status_page() -> Page:
    html = resources.files("agenthub.monitoring").joinpath("assets", ASSET).read_text("utf-8")
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for kind, content in _INLINE.findall(html):
        digest = base64.b64encode(hashlib.sha256(content.encode()).digest()).decode()
        hashes[kind].append(f"'sha256-{digest}'")
    policy = "; ".join(
        (
            "default-src 'none'",
            f"script-src {' '.join(hashes['script'])}",
            f"style-src {' '.join(hashes['style'])}",
            "connect-src 'self'",
            "img-src data:",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return Page(html, policy)


@router.get("/status", response_class=HTMLResponse, include_in_schema=False)
async def status() -> HTMLResponse:
    """The live status page (HTML; no API)."""
    page = status_page()
    return HTMLResponse(
        page.html, headers={"Content-Security-Policy": page.policy, "Cache-Control": "no-cache"}
    )
