"""One bench run: check the servers, set up accounts, run the virtual users and subscribers,
wait for the last events, and build the report."""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from agenthub.load.recorder import Recorder
from agenthub.load.report import RATE_LIMIT_HINT, Delivery, Latency, Report
from agenthub.load.scenario import Scenario
from agenthub.load.subscriber import Subscriber
from agenthub.load.user import Budget, Credentials, VirtualUser

REQUEST_TIMEOUT_SECONDS = 30.0
DRAIN_SECONDS = 5.0  # after the last request, for the events still on their way
REGISTRATIONS_AT_ONCE = 4  # each hashes a password on the server


class BenchError(Exception):
    """A run that cannot start: a server that cannot be reached, a refused set-up."""


@dataclass(frozen=True)
class BenchConfig:
    urls: tuple[str, ...]
    users: int
    subscribers: int
    duration: float | None  # seconds; None: until `requests` are done
    requests: int | None
    messages_per_session: int
    email: str | None = None  # of an existing account every user logs in as
    password: str | None = None

    def __post_init__(self) -> None:
        if not self.urls or self.users < 1:
            raise BenchError("give at least one URL and one user")
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise BenchError(f"{url!r} is not an http(s) URL such as http://127.0.0.1:8000")
        if self.duration is None and self.requests is None:
            raise BenchError("give a duration or a number of requests")
        if (self.email is None) != (self.password is None):
            raise BenchError("--email and --password go together")


class Bench:
    """A run; `recorder` can be read while it runs (the progress bar does). `on_phase` is
    called as the run enters each phase: registering, running (just before the first
    request), draining (just after the last response), done."""

    def __init__(
        self,
        config: BenchConfig,
        on_phase: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.recorder = Recorder()
        self.rng = random.Random()  # noqa: S311 - picks operations, not secrets
        self.phase = "connecting"
        self.budget = Budget(config.duration, config.requests)
        self._on_phase = on_phase

    def stop(self) -> None:
        """End the run early: no new request starts; the report covers what was done."""
        self.budget.stop()

    def _enter(self, phase: str) -> None:
        self.phase = phase
        if self._on_phase is not None:
            self._on_phase(phase)

    async def run(self) -> Report:
        config = self.config
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(_client(url, _share(config.users, i, config.urls)))
                for i, url in enumerate(config.urls)
            ]
            await asyncio.gather(*(_check(client) for client in clients))
            self._enter("registering")
            accounts = await _accounts(config, clients)
            subscribers = [
                # The next URL after its user's: with several servers every event crosses nodes.
                Subscriber(config.urls[(j % config.users + 1) % len(config.urls)], self.recorder)
                for j in range(config.subscribers)
            ]
            users = [
                VirtualUser(
                    clients[i % len(clients)],
                    accounts[i],
                    Scenario(config.messages_per_session),
                    self.recorder,
                    subscribers[i :: config.users],
                    random.Random(self.rng.random()),  # noqa: S311
                )
                for i in range(config.users)
            ]
            self._enter("running")
            self.budget.start()
            self.recorder.start()
            await asyncio.gather(*(user.run(self.budget) for user in users))
            self.recorder.finish()
            self._enter("draining")
            await _drain(lambda: _delivery(users, self.recorder), self.recorder)
            await asyncio.gather(*(s.close() for s in subscribers))
            self._enter("done")
            delivery = _delivery(users, self.recorder)
            return Report.build(self.recorder, config.urls, config.users, delivery)


def _share(users: int, index: int, urls: tuple[str, ...]) -> int:
    """How many users (at most one request in flight each) go to `urls[index]`."""
    return max(1, len(range(index, users, len(urls))))


def _client(url: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS)


async def _check(client: httpx.AsyncClient) -> None:
    try:
        response = await client.get("/v1/health/live", timeout=5.0)
    except httpx.HTTPError as exc:
        raise BenchError(f"cannot reach {client.base_url}: {exc or type(exc).__name__}") from exc
    if response.status_code != 200:
        raise BenchError(
            f"{client.base_url} does not answer like an agenthub server "
            f"(GET /v1/health/live: {response.status_code})"
        )


async def _accounts(config: BenchConfig, clients: list[httpx.AsyncClient]) -> list[Credentials]:
    """The given account for every user, or one new account per user (unique emails)."""
    if config.email is not None and config.password is not None:
        return [Credentials(config.email, config.password)] * config.users
    run = secrets.token_hex(4)
    password = secrets.token_urlsafe(18)
    accounts = [Credentials(f"bench-{run}-{i}@example.com", password) for i in range(config.users)]
    gate = asyncio.Semaphore(REGISTRATIONS_AT_ONCE)

    async def register(client: httpx.AsyncClient, account: Credentials) -> None:
        body = {"email": account.email, "password": account.password, "username": "bench"}
        async with gate:
            try:
                response = await client.post("/v1/auth/register", json=body)
            except httpx.HTTPError as exc:
                raise BenchError(f"registering {account.email}: {exc!r}") from exc
        if response.status_code == 429:
            raise BenchError(f"registering bench users was rate limited. {RATE_LIMIT_HINT}")
        if response.status_code != 201:
            raise BenchError(
                f"registering {account.email}: {response.status_code} {response.text[:300]}"
            )

    await asyncio.gather(
        *(register(clients[i % len(clients)], account) for i, account in enumerate(accounts))
    )
    return accounts


def _delivery(users: list[VirtualUser], recorder: Recorder) -> Delivery:
    """Expected events: each message posted, once per subscriber of its session."""
    subscribers = [s for user in users for s in user.subscribers]
    expected = received = 0
    for user in users:
        for subscriber in user.subscribers:
            for chat in subscriber.sessions:
                posted = user.posted.get(chat, [])
                expected += len(posted)
                received += sum(1 for m in posted if m in subscriber.seen)
    return Delivery(
        subscribers=len(subscribers),
        connected=sum(1 for s in subscribers if s.connected),
        expected=expected,
        received=received,
        duplicates=recorder.duplicates,
        latency=Latency.of(recorder.deliveries),
        errors=dict(recorder.ws_errors.most_common()),
    )


async def _drain(delivery: Callable[[], Delivery], recorder: Recorder) -> None:
    """Until every expected event has arrived, or DRAIN_SECONDS without it."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            while delivery().lost > 0:
                recorder.delivered.clear()
                await recorder.delivered.wait()
