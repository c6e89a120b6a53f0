"""The acceptance fault test (docs/realtime.md), on both backends: 200 forced disconnects of room
subscribers while a publisher runs, each followed by a resubscription from the last offset
seen; within the history window no subscriber may lose or repeat a single event.

The subscribers speak the raw protocol rather than `agenthub.client`: the client drops
duplicates on its own, which would hide a server that sends some."""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from conftest import Deployment
from realtime_support import eventually, receive, sign_up, ws_peer

pytestmark = pytest.mark.slow

SUBSCRIBERS = 10
DISCONNECTS = 200
EVENTS = 2000  # published at a steady pace over ~PUBLISH_SECONDS
PUBLISH_SECONDS = 6.0
DROP_INTERVAL = 0.025  # 200 drops in ~5 s: all of them while the publisher runs
CHANNEL = "room:faults"


@dataclass
class Subscriber:
    """One room subscriber that resubscribes from its last offset whenever it is cut off."""

    url: str
    offsets: list[int] = field(default_factory=list)  # every event received, in order
    epochs: set[str] = field(default_factory=set)
    first: int | None = None  # the offset its first subscription started after
    recovered: list[bool] = field(default_factory=list)  # of each resubscription
    replayed: int = 0  # events missed while cut off, replayed by resubscriptions
    drops: int = 0
    ws: ClientConnection | None = None  # set while subscribed on a live connection

    @property
    def last(self) -> int:
        if self.offsets:
            return self.offsets[-1]
        return -1 if self.first is None else self.first

    def drop(self) -> None:
        """Cut the TCP connection: no close frame, as when a network goes away."""
        assert self.ws is not None
        self.ws.transport.abort()
        self.ws = None
        self.drops += 1

    async def run(self) -> None:
        while True:
            try:
                async with connect(self.url, open_timeout=10) as ws:
                    await self._session(ws)
            except ConnectionClosed:
                self.ws = None

    async def _session(self, ws: ClientConnection) -> None:
        assert (await receive(ws))["type"] == "connected"
        frame: dict[str, Any] = {"type": "subscribe", "channel": CHANNEL}
        if self.first is not None:
            epoch = next(iter(self.epochs))
            frame["since"] = {"offset": self.last, "epoch": epoch}
        await ws.send(json.dumps(frame))
        while True:
            message = await receive(ws, wait=10)
            if message["type"] == "subscribed":
                if self.first is None:
                    self.first = message["offset"]
                else:
                    self.recovered.append(message["recovered"])
                    self.replayed += message["offset"] - frame["since"]["offset"]
                self.epochs.add(message["epoch"])
                self.ws = ws
            elif message["type"] == "event":
                self.epochs.add(message["epoch"])
                self.offsets.append(message["offset"])
            else:
                raise AssertionError(f"unexpected frame {message}")


async def publish(url: str, token: str, disrupted: asyncio.Event) -> list[int]:
    """Publish room messages at a steady pace: `EVENTS` of them, and more if the disconnects
    are not over by then (so every one happens while publishing); their offsets."""
    offsets: list[int] = []
    async with ws_peer(url, token) as peer:
        started = time.monotonic()
        n = 0
        while n < EVENTS or not disrupted.is_set():
            offsets.append((await peer.publish(CHANNEL, {"n": n}))["offset"])
            n += 1
            delay = started + n * PUBLISH_SECONDS / EVENTS - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    return offsets


async def disrupt(subscribers: list[Subscriber], seed: int) -> None:
    """`DISCONNECTS` drops, each of a random subscriber that is connected and subscribed."""
    chooser = random.Random(seed)
    dropped = 0
    while dropped < DISCONNECTS:
        await asyncio.sleep(DROP_INTERVAL)
        ready = [s for s in subscribers if s.ws is not None]
        if ready:
            chooser.choice(ready).drop()
            dropped += 1


async def test_forced_disconnects_lose_and_repeat_nothing(deployment: Deployment) -> None:
    with deployment.node(AGENTHUB_WS_FRAMES_PER_SECOND="1000") as node:
        account = await sign_up(node.http)
        url = f"{node.ws}?token={account.access_token}"
        subscribers = [Subscriber(url) for _ in range(SUBSCRIBERS)]
        runners = [asyncio.create_task(s.run()) for s in subscribers]
        try:

            async def all_subscribed() -> bool:
                return all(s.ws is not None for s in subscribers)

            await eventually(all_subscribed, wait=10)

            disrupted = asyncio.Event()
            publisher = asyncio.create_task(publish(node.ws, account.access_token, disrupted))
            await disrupt(subscribers, seed=len(deployment.backend))
            disrupted.set()
            published = await publisher
            final = published[-1]

            async def caught_up() -> bool:
                for runner in runners:
                    if runner.done():
                        runner.result()  # a subscriber that failed: show why
                return all(s.last >= final for s in subscribers)

            await eventually(caught_up, wait=15)  # each one reaches the last publication
        finally:
            for runner in runners:
                runner.cancel()
            await asyncio.gather(*runners, return_exceptions=True)

    assert len(published) >= EVENTS
    assert published == sorted(set(published))  # unique, increasing (presence events between)
    assert sum(s.drops for s in subscribers) == DISCONNECTS
    lost = duplicated = disordered = lost_publications = 0
    for s in subscribers:
        assert s.first is not None and len(s.epochs) == 1, (s.first, s.epochs)
        assert s.recovered == [True] * s.drops  # every drop was followed by a full resume
        seen = set(s.offsets)
        lost += len(set(range(s.first + 1, final + 1)) - seen)
        duplicated += len(s.offsets) - len(seen)
        disordered += sum(1 for a, b in pairwise(s.offsets) if a >= b)
        missing_publications = {o for o in published if o > s.first} - seen
        lost_publications += len(missing_publications)
    assert (lost, duplicated, disordered, lost_publications) == (0, 0, 0, 0)
    assert sum(s.replayed for s in subscribers) > 0  # the drops did cost events to recover
