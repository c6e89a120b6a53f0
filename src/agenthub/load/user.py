"""A virtual user: one account driving the scenario's operations back to back over REST."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from agenthub.load.recorder import Recorder
from agenthub.load.scenario import Operation, Scenario
from agenthub.load.subscriber import Subscriber

AGENT_TYPE = "bench"
PAGE_SIZE = 20
ERROR_PAUSE_SECONDS = 0.1  # after a failed request, so a refusing server is not hammered
LONGEST_RETRY_AFTER_SECONDS = 30.0
WORDS = (
    "the agent read the log and found a timeout in the worker while the queue kept growing "
    "so it suggested raising the lease and retrying the failed jobs with backoff"
).split()


@dataclass(frozen=True)
class Credentials:
    email: str
    password: str


class Budget:
    """When the run ends: at a deadline, after a number of requests, or whichever comes first;
    or at once when stopped."""

    def __init__(self, seconds: float | None, requests: int | None) -> None:
        self.seconds = seconds
        self.deadline: float | None = None
        self.remaining = requests
        self.stopped = False

    def start(self) -> None:
        if self.seconds is not None:
            self.deadline = time.monotonic() + self.seconds

    def stop(self) -> None:
        self.stopped = True

    def wait_within(self, seconds: float) -> float:
        """`seconds`, or less so that a wait does not outlast the run."""
        if self.stopped:
            return 0.0
        if self.deadline is None:
            return seconds
        return max(0.0, min(seconds, self.deadline - time.monotonic()))

    def take(self) -> bool:
        """True while another request may start (and counts it)."""
        if self.stopped or (self.deadline is not None and time.monotonic() >= self.deadline):
            return False
        if self.remaining is None:
            return True
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


class VirtualUser:
    def __init__(
        self,
        client: httpx.AsyncClient,
        credentials: Credentials,
        scenario: Scenario,
        recorder: Recorder,
        subscribers: list[Subscriber],
        rng: random.Random,
    ) -> None:
        self.client = client
        self.credentials = credentials
        self.scenario = scenario
        self.recorder = recorder
        self.subscribers = subscribers
        self.rng = rng
        self.token: str | None = None
        self.budget = Budget(None, None)  # the run's, once it runs
        self.sessions: list[str] = []
        self.posted: dict[str, list[str]] = {}  # session id -> ids of the messages posted
        self.cursors: dict[str, str | None] = {}  # session id -> where its history paging is
        self.messages = 0

    async def run(self, budget: Budget) -> None:
        self.budget = budget
        while budget.take():
            current = self.posted[self.sessions[-1]] if self.sessions else None
            operation = self.scenario.next_operation(
                self.rng,
                logged_in=self.token is not None,
                posted_in_current=None if current is None else len(current),
            )
            if not await self._perform(operation):
                await asyncio.sleep(ERROR_PAUSE_SECONDS)

    async def _perform(self, operation: Operation) -> bool:
        match operation:
            case Operation.LOGIN:
                return await self._login()
            case Operation.CREATE_SESSION:
                return await self._create_session()
            case Operation.POST_MESSAGE:
                return await self._post_message()
            case Operation.PAGE_HISTORY:
                return await self._page_history()
            case Operation.GET_SESSION:
                chat = self.rng.choice(self.sessions)
                found = await self._request(operation, "GET", f"/v1/sessions/{chat}?messages=10")
                return found is not None
            case Operation.LIST_SESSIONS:
                listed = await self._request(operation, "GET", "/v1/sessions?limit=20")
                return listed is not None

    async def _request(
        self, operation: Operation, method: str, path: str, **kwargs: Any
    ) -> dict[str, Any] | None:
        """The JSON body of a successful request; None (recorded as an error) otherwise."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        started = time.perf_counter()
        try:
            response = await self.client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException:
            self.recorder.failure(operation, "timeout")
            return None
        except httpx.TransportError as exc:
            self.recorder.failure(operation, type(exc).__name__)
            return None
        if response.status_code == 503 and (wait := _retry_after(response)) is not None:
            self.recorder.deferral(operation)
            # As a client should before it tries again (within the run).
            await asyncio.sleep(self.budget.wait_within(wait))
            return None
        if not response.is_success:
            self.recorder.failure(operation, str(response.status_code))
            return None
        self.recorder.success(operation, time.perf_counter() - started)
        body: dict[str, Any] = response.json()
        return body

    async def _login(self) -> bool:
        credentials = {"email": self.credentials.email, "password": self.credentials.password}
        tokens = await self._request(Operation.LOGIN, "POST", "/v1/auth/login", json=credentials)
        if tokens is None:
            return False
        self.token = tokens["access_token"]
        waiting = [s.connect(self.token) for s in self.subscribers if not s.started]
        await asyncio.gather(*waiting)
        return True

    async def _create_session(self) -> bool:
        body = {"agent_type": AGENT_TYPE, "title": f"bench {len(self.sessions) + 1}"}
        created = await self._request(Operation.CREATE_SESSION, "POST", "/v1/sessions", json=body)
        if created is None:
            return False
        chat: str = created["session"]["id"]
        # Subscribed before the first message, so every one of its events is expected.
        await asyncio.gather(*(s.subscribe(chat) for s in self.subscribers))
        self.sessions.append(chat)
        self.posted[chat] = []
        return True

    async def _post_message(self) -> bool:
        chat = self.sessions[-1]
        self.messages += 1
        words = " ".join(self.rng.choices(WORDS, k=self.rng.randint(5, 30)))
        body = {"role": "user", "content": f"message {self.messages}: {words}"}
        path = f"/v1/sessions/{chat}/messages"
        message = await self._request(Operation.POST_MESSAGE, "POST", path, json=body)
        if message is None:
            return False
        self.posted[chat].append(message["id"])
        return True

    async def _page_history(self) -> bool:
        """The next page of a session's messages by cursor, from the start again at the end."""
        chat = self.rng.choice(self.sessions)
        params: dict[str, str | int] = {"limit": PAGE_SIZE}
        cursor = self.cursors.get(chat)
        if cursor is not None:
            params["after"] = cursor
        path = f"/v1/sessions/{chat}/messages"
        page = await self._request(Operation.PAGE_HISTORY, "GET", path, params=params)
        if page is None:
            return False
        self.cursors[chat] = page["next_cursor"] if page["has_more"] else None
        return True


def _retry_after(response: httpx.Response) -> float | None:
    """The seconds a `Retry-After` header asks to wait (capped), if it gives a number."""
    value = response.headers.get("Retry-After", "")
    return min(float(value), LONGEST_RETRY_AFTER_SECONDS) if value.isdigit() else None
