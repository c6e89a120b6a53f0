"""A steady load of REST calls for fault tests: one loop per kind of call, each sending its next
request once the previous one is answered, every answer recorded with its times. Import as
`from steady_load import ...`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

Call = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]
PAUSE_SECONDS = 0.02


@dataclass(frozen=True)
class Answer:
    """One call: when it was sent and answered, and its status (None when no HTTP answer came:
    a timeout, a reset or a refused connection, described in `error`)."""

    call: str
    sent: float
    answered: float
    status: int | None
    content_type: str = ""
    data: Any = None  # the JSON body of a 2xx answer
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def __str__(self) -> str:
        return f"{self.call}: {self.status or self.error} ({self.content_type})"


class SteadyLoad:
    """`async with SteadyLoad(client, calls) as load:` runs every call in its own loop until
    the block ends; `load.answers` holds what came back, in the order it came."""

    def __init__(self, client: httpx.AsyncClient, calls: Mapping[str, Call]) -> None:
        self.client = client
        self.calls = dict(calls)
        self.answers: list[Answer] = []
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> SteadyLoad:
        self._tasks = [asyncio.create_task(self._loop(name)) for name in self.calls]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _loop(self, name: str) -> None:
        call = self.calls[name]
        while True:
            sent = time.monotonic()
            try:
                response = await call(self.client)
            except httpx.HTTPError as exc:
                error = repr(exc) or type(exc).__name__
                self.answers.append(Answer(name, sent, time.monotonic(), None, error=error))
            else:
                content_type = response.headers.get("content-type", "")
                ok = response.is_success and content_type.startswith("application/json")
                data = response.json() if ok else None
                self.answers.append(
                    Answer(name, sent, time.monotonic(), response.status_code, content_type, data)
                )
            await asyncio.sleep(PAUSE_SECONDS)

    def between(self, start: float, end: float) -> list[Answer]:
        """The answers to calls sent at or after `start` and answered by `end`."""
        return [a for a in self.answers if a.sent >= start and a.answered <= end]

    def first_success(self, call: str, after: float) -> Answer | None:
        """The first success of `call` answered at or after `after`."""
        return next(
            (a for a in self.answers if a.call == call and a.ok and a.answered >= after), None
        )

    async def recovered(self, after: float, wait: float) -> dict[str, float]:
        """Seconds from `after` until each call's first success; waits up to `wait` seconds
        for all of them (a call still failing then is missing)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if all(self.first_success(name, after) for name in self.calls):
                break
            await asyncio.sleep(0.05)
        firsts = {name: self.first_success(name, after) for name in self.calls}
        return {name: a.answered - after for name, a in firsts.items() if a is not None}
