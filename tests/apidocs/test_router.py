"""`GET /docs` (Swagger UI) and `GET /redoc` (ReDoc): the pages and their assets as served, and
both pages at work in a real headless Chromium against a real `agenthub serve`, with no request
leaving the server's origin."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conftest import TEST_SECRET
from monitoring.browser import Page, chromium
from monitoring.test_status_page import directive
from processes import clean_env, server_process

# Each page and how it names the OpenAPI document to its script.
PAGES = {"/docs": 'data-openapi-url="/openapi.json"', "/redoc": 'spec-url="/openapi.json"'}
CONTENT_TYPES = {
    ".js": {"text/javascript", "application/javascript"},
    ".css": {"text/css"},
    ".png": {"image/png"},
}
SOURCE_MAP = re.compile(r"^(//|/\*)# sourceMappingURL=", re.MULTILINE)
KNOWN_ROUTE = "/v1/projects"
LIVE = "live_v1_health_live_get"  # the operation id of GET /v1/health/live


def links(html: str) -> list[str]:
    return re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", html)


async def test_pages_load_only_their_own_assets(client: httpx.AsyncClient) -> None:
    for path, document in PAGES.items():
        page = await client.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-cache"
        policy = page.headers["content-security-policy"]
        assert directive(policy, "default-src") == ["'none'"]
        assert directive(policy, "script-src") == ["'self'"]  # no inline script at all
        assert directive(policy, "connect-src") == ["'self'"]
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "an inline script"
        assert not re.search(r"https?://|wss?://", page.text)
        assert document in page.text

        for url in links(page.text):
            assert url.startswith("/docs/assets/"), url
            asset = await client.get(url, headers={"Accept-Encoding": "gzip"})
            assert asset.status_code == 200, url
            parts = urlsplit(url)
            suffix = Path(parts.path).suffix
            media_type = asset.headers["content-type"].split(";")[0]
            assert media_type in CONTENT_TYPES[suffix], (url, media_type)
            # The URL names the content, so the file may be kept for a year.
            assert parts.query == f"v={hashlib.sha256(asset.content).hexdigest()[:16]}", url
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            if suffix in (".js", ".css"):
                assert not SOURCE_MAP.search(asset.text), url
            if len(asset.content) > 100_000:  # the bundles travel compressed
                assert asset.headers["content-encoding"] == "gzip", url
                assert asset.num_bytes_downloaded < len(asset.content) / 2, url
            revalidated = await client.get(url, headers={"If-None-Match": asset.headers["etag"]})
            assert revalidated.status_code == 304, url


async def test_only_asset_files_are_served(client: httpx.AsyncClient) -> None:
    for path in (
        "/docs/assets/swagger-ui/nothing.js",
        "/docs/assets/swagger-ui/..%2f..%2frouter.py",
    ):
        missing = await client.get(path)
        assert missing.status_code == 404, path
        assert missing.headers["content-type"] == "application/problem+json", path


Document = dict[str, dict[str, dict[str, dict[str, str]]]]


def operations(document: Document) -> set[str]:
    """The operation ids of an OpenAPI document."""
    return {op["operationId"] for path in document["paths"].values() for op in path.values()}


def endpoints(document: Document) -> set[str]:
    """The "METHOD /path" of each operation of an OpenAPI document."""
    return {
        f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
    }


def foreign(requests: list[str], origin: str) -> list[str]:
    """The requested URLs that are neither on `origin` nor inline data."""
    outside = []
    for url in requests:
        parts = urlsplit(url.removeprefix("blob:"))
        if parts.scheme != "data" and f"{parts.scheme}://{parts.netloc}" != origin:
            outside.append(url)
    return outside


async def click(page: Page, selector: str) -> None:
    """Click the element `selector` names, once it is there."""
    element = f"document.querySelector({json.dumps(selector)})"
    await page.wait_for(f"!!{element}")
    await page.evaluate(f"{element}.click()")


async def open_page(page: Page, url: str, rendered: str) -> None:
    """Open `url` and wait until the JS expression `rendered` is true."""
    page.errors.clear()
    page.requests.clear()
    await page.goto(url)
    try:
        await page.wait_for(rendered, 20)
    except TimeoutError:
        pytest.fail(f"{url} did not render; errors: {page.errors}; requests: {page.requests}")


@pytest.mark.slow
async def test_docs_render_offline_in_chromium(tmp_path: Path) -> None:
    env = clean_env(
        AGENTHUB_SECRET_KEY=TEST_SECRET,
        AGENTHUB_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'agenthub.db'}",
        AGENTHUB_FILES_DIR=str(tmp_path / "files"),
        AGENTHUB_LOG_LEVEL="WARNING",
    )
    async with chromium(tmp_path) as page:
        with server_process(tmp_path, env) as server:
            origin = server.http
            async with httpx.AsyncClient(base_url=origin, timeout=10) as api:
                document = (await api.get("/openapi.json")).json()
            assert KNOWN_ROUTE in document["paths"]

            # Swagger UI: a block for every operation, and "Try it out" reaches the API.
            await open_page(page, f"{origin}/docs", "document.querySelectorAll('.opblock').length")
            shown = await page.evaluate(
                "[...document.querySelectorAll('.opblock-summary')].map(e =>"
                " e.querySelector('.opblock-summary-method').textContent + ' '"
                " + e.querySelector('.opblock-summary-path').dataset.path)"
            )
            assert set(shown) == endpoints(document)
            assert f"GET {KNOWN_ROUTE}" in shown
            await click(page, f"#operations-health-{LIVE} .opblock-summary-control")
            await click(page, ".try-out__btn")
            await click(page, ".btn.execute")
            status = await page.wait_for(
                "document.querySelector('.live-responses-table tr.response .response-col_status')"
                "?.textContent.trim()"
            )
            assert status == "200"
            assert page.errors == [], page.errors  # no script error, CSP violation, bad load
            assert foreign(page.requests, origin) == [], page.requests
            assert f"{origin}/openapi.json" in page.requests

            # ReDoc: one section per operation, named by its operation id.
            sections = "[...document.querySelectorAll('[data-section-id^=\"operation/\"]')]"
            await open_page(page, f"{origin}/redoc", f"{sections}.length")
            rendered = await page.evaluate(
                f"{sections}.map(e => e.dataset.sectionId.slice('operation/'.length))"
            )
            assert set(rendered) == operations(document)
            assert KNOWN_ROUTE in await page.evaluate("document.body.innerText")
            assert page.errors == [], page.errors
            assert foreign(page.requests, origin) == [], page.requests
            assert f"{origin}/openapi.json" in page.requests
