"""`GET /docs` (Swagger UI) and `GET /redoc` (ReDoc), from this package's own files.

The pages load nothing but same-origin files: the vendored builds under `assets/` (npm's
swagger-ui-dist and redoc, with their licences; `make docs-assets` refreshes them) and the
Swagger UI start-up script beside them. Their Content-Security-Policy allows scripts from this
origin only, never inline. Asset URLs carry a digest of the file, so browsers keep each file
for a year and fetch it again only once it has changed; the pages themselves are revalidated.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from html import escape
from importlib import resources

from fastapi import APIRouter, Request
from starlette.middleware.gzip import GZipMiddleware
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import PathLike, StaticFiles
from starlette.types import Scope

PACKAGE = "agenthub.apidocs"
ASSETS_PATH = "/docs/assets"
FAVICON = "swagger-ui/favicon-32x32.png"
POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",  # both libraries set inline styles
        "img-src 'self' data:",
        "connect-src 'self'",
        "worker-src blob:",  # ReDoc's search index
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {"Content-Security-Policy": POLICY, "Cache-Control": "no-cache"}

SWAGGER_UI_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - Swagger UI</title>
<link rel="icon" type="image/png" href="{favicon}">
<link rel="stylesheet" href="{css}">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi}"></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"""

REDOC_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - ReDoc</title>
<link rel="icon" type="image/png" href="{favicon}">
</head>
<body>
<redoc spec-url="{openapi}"></redoc>
<script src="{bundle}"></script>
</body>
</html>
"""


class Assets(StaticFiles):
    """The asset files, cacheable for a year: their URLs change with their content."""

    def file_response(
        self, full_path: PathLike, stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response


@cache
def _versioned(name: str) -> str:
    content = resources.files(PACKAGE).joinpath("assets", name).read_bytes()
    return f"{ASSETS_PATH}/{name}?v={hashlib.sha256(content).hexdigest()[:16]}"


def _page(request: Request, template: str, **assets: str) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    urls = {key: root + _versioned(name) for key, name in assets.items()}
    html = template.format(
        title=escape(request.app.title),
        openapi=escape(root + request.app.openapi_url),
        favicon=root + _versioned(FAVICON),
        **urls,
    )
    return HTMLResponse(html, headers=PAGE_HEADERS)


router = APIRouter(include_in_schema=False)
router.mount(
    ASSETS_PATH,
    GZipMiddleware(Assets(packages=[(PACKAGE, "assets")]), compresslevel=6),
    name="docs-assets",
)


@router.get("/docs", response_class=HTMLResponse)
async def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI over this server's OpenAPI document."""
    return _page(
        request,
        SWAGGER_UI_PAGE,
        css="swagger-ui/swagger-ui.css",
        bundle="swagger-ui/swagger-ui-bundle.js",
        init="swagger-init.js",
    )


@router.get("/redoc", response_class=HTMLResponse)
async def redoc(request: Request) -> HTMLResponse:
    """ReDoc over this server's OpenAPI document."""
    return _page(request, REDOC_PAGE, bundle="redoc/redoc.standalone.js")
