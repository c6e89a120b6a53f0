"""A headless Chromium driven over the Chrome DevTools Protocol: navigate, read the DOM,
take a screenshot, and collect what the page reported as errors (exceptions, CSP violations,
failed loads, console errors) and the URL of every request it made."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
from asyncio.subprocess import DEVNULL
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

START_TIMEOUT = 15.0
CALL_TIMEOUT = 15.0


def chromium_path() -> str:
    """The Chromium executable; skips the test without one (fails it when `CI` is set)."""
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is required in CI but not installed (Debian package chromium)")
        pytest.skip("chromium is not installed")
    return path


class CdpError(Exception):
    """The browser refused a command or the page's script threw."""


class Page:
    """One page target's DevTools session."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self.errors: list[str] = []
        self.requests: list[str] = []  # every URL the page asked for, in order

    async def read(self) -> None:
        """Dispatch replies and events until the connection ends."""
        async for raw in self._ws:
            message = json.loads(raw)
            if "id" in message:
                reply = self._pending.pop(message["id"], None)
                if reply is not None and not reply.done():
                    if "error" in message:
                        reply.set_exception(CdpError(message["error"].get("message")))
                    else:
                        reply.set_result(message.get("result", {}))
                continue
            self._on_event(message["method"], message.get("params", {}))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(details.get("exception", {}).get("description") or details["text"])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.errors.append(params["entry"]["text"])
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.errors.append(
                " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        for waiter in [w for w in self._waiters if w[0] == method]:
            self._waiters.remove(waiter)
            if not waiter[1].done():
                waiter[1].set_result(params)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        message_id = next(self._ids)
        reply = asyncio.get_running_loop().create_future()
        self._pending[message_id] = reply
        await self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        return await asyncio.wait_for(reply, CALL_TIMEOUT)

    async def goto(self, url: str) -> None:
        """Navigate and wait for the load event."""
        loaded = asyncio.get_running_loop().create_future()
        self._waiters.append(("Page.loadEventFired", loaded))
        result = await self.call("Page.navigate", url=url)
        if "errorText" in result:
            raise CdpError(f"{url}: {result['errorText']}")
        await asyncio.wait_for(loaded, CALL_TIMEOUT)

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise CdpError(result["exceptionDetails"].get("text", expression))
        return result["result"].get("value")

    async def text(self, element_id: str) -> str | None:
        """The text of the element with this id (None when there is none)."""
        value = await self.evaluate(
            f"document.getElementById({json.dumps(element_id)})?.textContent ?? null"
        )
        return None if value is None else str(value).strip()

    async def wait_for(self, expression: str, wait: float = 10) -> Any:
        """The first truthy value of `expression`, polled every 100 ms for `wait` seconds."""
        async with asyncio.timeout(wait):
            while True:
                value = await self.evaluate(expression)
                if value:
                    return value
                await asyncio.sleep(0.1)

    async def screenshot(self) -> bytes:
        """The viewport as PNG."""
        shot = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(shot["data"])


async def _devtools_port(profile: Path, proc: asyncio.subprocess.Process, log: Path) -> int:
    """The port Chromium chose, from the `DevToolsActivePort` file it writes at start."""
    marker = profile / "DevToolsActivePort"
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            if proc.returncode is not None:
                raise CdpError(f"chromium exited with {proc.returncode}; see {log}")
            with suppress(FileNotFoundError, ValueError, IndexError):
                return int(marker.read_text().splitlines()[0])
            await asyncio.sleep(0.05)


async def _page_socket(port: int) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
        targets = (await client.get("/json/list")).json()
    page = next(t for t in targets if t["type"] == "page")
    url: str = page["webSocketDebuggerUrl"]
    return url


@asynccontextmanager
async def chromium(workdir: Path, width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
    """A headless Chromium with one blank page, `width` by `height`; its processes end on exit."""
    profile = workdir / "chromium-profile"
    log = workdir / "chromium.log"
    args = [
        chromium_path(),
        "--headless=new",
        "--no-sandbox",  # tests may run as root, in containers without user namespaces
        "--disable-gpu",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--mute-audio",
        f"--window-size={width},{height}",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "--enable-logging",
        f"--log-file={log}",
        "about:blank",
    ]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=DEVNULL, stderr=DEVNULL, start_new_session=True
    )
    try:
        socket_url = await _page_socket(await _devtools_port(profile, proc, log))
        async with connect(socket_url, max_size=None, open_timeout=START_TIMEOUT) as ws:
            page = Page(ws)
            reader = asyncio.create_task(page.read())
            try:
                for domain in ("Page", "Runtime", "Log", "Network"):
                    await page.call(f"{domain}.enable")
                await page.call(
                    "Emulation.setDeviceMetricsOverride",
                    width=width,
                    height=height,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                yield page
            finally:
                reader.cancel()
                with suppress(asyncio.CancelledError):
                    await reader
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the browser and its helper processes
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
