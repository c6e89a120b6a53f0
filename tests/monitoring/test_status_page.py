"""`GET /status`: the page as served (self-contained, public summary without a token) and the
page at work in a real headless Chromium against a real `agenthub serve`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import secrets
import struct
from pathlib import Path

import httpx
import pytest

from conftest import TEST_SECRET
from monitoring.browser import Page, chromium
from processes import clean_env, free_port, server_process
from realtime_support import create_admin
from support import Account, register

REPOSITORY = Path(__file__).resolve().parents[2]
SCREENSHOT = REPOSITORY / "test-artifacts" / "status-page.png"
WIDTH, HEIGHT = 1280, 900
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
INTERVAL = "0.5"  # AGENTHUB_STATUS_INTERVAL_SECONDS
LIVE_VALUES = (
    "requests-per-second",
    "requests-last-minute",
    "errors-per-second",
    "errors-last-minute",
    "latency-p50",
    "latency-p95",
    "latency-p99",
    "websocket-connections",
    "websocket-disconnections",
    "active-sessions",
    "queue-depth",
    "queue-running",
    "queue-scheduled",
    "queue-oldest",
    "cpu-percent",
    "memory-percent",
    "memory-used",
    "memory-total",
    "process-rss",
    "alert-count",
    "alerts",
)


def directive(policy: str, name: str) -> list[str]:
    """The sources of one Content-Security-Policy directive."""
    for part in policy.split(";"):
        key, *sources = part.split()
        if key == name:
            return sources
    raise AssertionError(f"{name} missing from {policy!r}")


async def test_status_page_is_self_contained(client: httpx.AsyncClient) -> None:
    response = await client.get("/status")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    html = response.text

    # Nothing is loaded, linked or fetched from anywhere but this server.
    assert not re.search(r"https?://|wss?://", html)
    for url in re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)""", html):
        assert url.startswith(("/", "#", "data:")) and not url.startswith("//"), url
    policy = response.headers["content-security-policy"]
    assert directive(policy, "default-src") == ["'none'"]
    assert directive(policy, "connect-src") == ["'self'"]
    blocks = re.findall(r"<(script|style)>(.*?)</\1>", html, re.DOTALL)
    assert {kind for kind, _ in blocks} == {"script", "style"}
    for kind, content in blocks:
        digest = base64.b64encode(hashlib.sha256(content.encode()).digest()).decode()
        assert directive(policy, f"{kind}-src") == [f"'sha256-{digest}'"]

    # Without a token: the public summary; the live view stays hidden until an admin connects.
    assert re.search(r'<section id="public-summary"(?![^>]*\bhidden\b)', html)
    assert re.search(r'<section id="live-view"[^>]*\bhidden\b', html)
    for element_id in ("health-status", "uptime", "health-components", *LIVE_VALUES):
        assert f'id="{element_id}"' in html, element_id
    health = await client.get("/v1/health")  # what the public summary polls, anonymously
    assert health.status_code == 200
    assert health.json()["status"] in {"ok", "degraded"}
    assert health.json()["uptime_seconds"] > 0

    # The page's own requests are not request metrics.
    assert 'route="/status"' not in (await client.get("/metrics")).text


def embedded_env(workdir: Path) -> dict[str, str]:
    """`agenthub serve` on a SQLite file of its own, publishing metrics every half second."""
    return clean_env(
        AGENTHUB_SECRET_KEY=TEST_SECRET,
        AGENTHUB_DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'agenthub.db'}",
        AGENTHUB_FILES_DIR=str(workdir / "files"),
        AGENTHUB_LOG_LEVEL="WARNING",
        AGENTHUB_STATUS_INTERVAL_SECONDS=INTERVAL,
    )


def number_at_least(element_id: str, least: int) -> str:
    """JS: the element's text once it is an integer >= `least`, else null."""
    return (
        f"(() => {{ const t = document.getElementById('{element_id}').textContent.trim();"
        f" return /^\\d+$/.test(t) && Number(t) >= {least} ? t : null; }})()"
    )


def connection_state_is(state: str) -> str:
    return f"document.getElementById('connection-state').dataset.state === '{state}'"


def cookie_login(account: Account) -> str:
    """JS: sign in from the page with httpOnly cookies; the response status."""
    body = json.dumps({"email": account.email, "password": account.password, "cookie": True})
    return (
        "fetch('/v1/auth/login', {method: 'POST', headers: {'Content-Type': 'application/json'},"
        f" body: {json.dumps(body)}}}).then(r => r.status)"
    )


async def open_status(page: Page, base: str, token: str | None = None) -> None:
    await page.goto("about:blank")  # a fragment change alone would not reload the page
    await page.goto(f"{base}/status" + (f"#token={token}" if token else ""))


async def public_view(page: Page, base: str, token: str | None) -> str:
    """Open the page as a visitor who gets the public summary; the connection state shown."""
    await open_status(page, base, token)
    health = await page.wait_for(
        "['ok', 'degraded'].includes(document.getElementById('health-status').textContent)"
        " && document.getElementById('health-status').textContent"
    )
    assert health in {"ok", "degraded"}
    assert re.fullmatch(r"\d+[smhd]( \d+[smh])?", await page.text("uptime") or "")
    rows = await page.evaluate(
        "[...document.querySelectorAll('#health-components tbody tr')].map(r => r.id)"
    )
    assert "component-database" in rows
    state = await page.wait_for(
        f"{connection_state_is('public')}"
        " && document.getElementById('connection-state').textContent"
    )
    assert await page.evaluate("document.getElementById('live-view').hidden") is True
    return str(state)


@pytest.mark.slow
async def test_status_page_in_chromium(tmp_path: Path) -> None:
    env = embedded_env(tmp_path)
    port = free_port()
    async with chromium(tmp_path, WIDTH, HEIGHT) as page:
        with server_process(tmp_path, env, port=port) as server:
            base = server.http
            admin = await create_admin(base, tmp_path, env)
            async with httpx.AsyncClient(base_url=base, timeout=10) as api:
                user = await register(api, f"status-{secrets.token_hex(4)}@example.com")

                # Anyone, and a user who is not an administrator: the public summary.
                assert await public_view(page, base, None) == "public summary"
                refused = await public_view(page, base, user.access_token)
                assert "not an administrator" in refused

                # An administrator: live metrics over the WebSocket; the token leaves the
                # address bar.
                await open_status(page, base, admin.access_token)
                await page.wait_for(connection_state_is("live"))
                assert await page.evaluate("location.hash") == ""
                before = int(await page.wait_for(number_at_least("requests-last-minute", 0)))
                assert int(await page.wait_for(number_at_least("websocket-connections", 1)))
                node = await page.text("node")

                for _ in range(30):
                    listed = await api.get("/v1/sessions", headers=user.headers)
                    assert listed.status_code == 200, listed.text
                after = await page.wait_for(
                    number_at_least("requests-last-minute", before + 30), 15
                )
                assert int(after) >= before + 30
                assert await page.text("health-status") in {"ok", "degraded"}
                assert float(await page.text("requests-per-second") or "0") > 0
                assert re.fullmatch(r"\d+\.\d", await page.text("latency-p99") or "")

                png = await page.screenshot()
                SCREENSHOT.parent.mkdir(exist_ok=True)
                SCREENSHOT.write_bytes(png)

                # An administrator signed in with cookies, as a web dashboard signs in.
                await page.evaluate("sessionStorage.clear()")
                assert await page.evaluate(cookie_login(admin)) == 200
                await open_status(page, base)
                await page.wait_for(connection_state_is("live"))
                assert page.errors == [], page.errors  # no script error, CSP violation, bad load

        # The server goes away and comes back: the page says so, then reconnects by itself.
        await page.wait_for(connection_state_is("reconnecting"))
        with server_process(tmp_path, env, port=port):
            await page.wait_for(connection_state_is("live"), wait=15)
            await page.wait_for(f"document.getElementById('node').textContent !== '{node}'")

        # A cookie sign-in outlives its access tokens (3 s here): each time the server closes
        # the live view (4401) the page refreshes its cookies and reconnects.
        brief_env = {**env, "AGENTHUB_ACCESS_TOKEN_MINUTES": "0.05"}
        with server_process(tmp_path, brief_env, port=port):
            await open_status(page, base)
            page.errors.clear()  # the refused connections while no server ran
            assert await page.evaluate(cookie_login(admin)) == 200
            await open_status(page, base)
            await page.wait_for(connection_state_is("live"))
            await asyncio.sleep(8)  # past two token lifetimes
            await page.wait_for(connection_state_is("live"), wait=5)
            assert page.errors == [], page.errors

    assert png.startswith(PNG_SIGNATURE)
    assert struct.unpack(">II", png[16:24]) == (WIDTH, HEIGHT)  # the IHDR chunk
    assert len(png) > 20_000, len(png)  # a rendered page, not a blank image
