"""Close realtime connections with 1001 as soon as the server is told to stop.

uvicorn closes open WebSockets with 1012 and waits for streaming responses before it runs the
lifespan shutdown, so the hub hears SIGTERM/SIGINT itself: the handler installed by the server
still runs, after the hub has closed every WebSocket with 1001 and ended every SSE stream.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from agenthub.realtime.hub import Hub

SIGNALS = (signal.SIGTERM, signal.SIGINT)
Handler = Callable[[int, FrameType | None], Any] | int | None


@contextmanager
def signals_close(hub: Hub) -> Iterator[None]:
    """While active, SIGTERM/SIGINT first shut the hub down, then do what they did before.
    Only in the main thread and only over a handler that a server installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[signal.Signals, Handler] = {}
    for sig in SIGNALS:
        current = signal.getsignal(sig)
        if not callable(current):
            continue
        previous[sig] = current

        def handler(signum: int, frame: FrameType | None, chained: Any = current) -> None:
            loop.call_soon_threadsafe(hub.shut_down)
            chained(signum, frame)

        signal.signal(sig, handler)
    try:
        yield
    finally:
        for restored, handler_before in previous.items():
            signal.signal(restored, handler_before)
