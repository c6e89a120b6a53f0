"""Callbacks on the live events of internal channels, for what in a process is not a client
connection: workers hear wake-ups on `jobs`, the hub hears ended credentials. A process without
a hub (`agenthub worker`) makes its `Watchers` the broker's listener; in an API process the
hub hands every event on to them."""

from __future__ import annotations

from collections.abc import Callable

from agenthub.realtime.broker import Broker, Event

Callback = Callable[[Event], None]


class Watchers:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._callbacks: dict[str, list[Callback]] = {}

    async def watch(self, channel: str, callback: Callback) -> None:
        """Call `callback` with each live event on `channel`, published on any node. Raises
        `BrokerUnavailable` if the broker cannot subscribe; watching again (the same
        callback) retries."""
        callbacks = self._callbacks.setdefault(channel, [])
        if callback not in callbacks:
            callbacks.append(callback)
        await self._broker.subscribe(channel)

    def on_event(self, event: Event) -> None:
        for callback in self._callbacks.get(event.channel, ()):
            callback(event)

    def on_resync(self) -> None:
        """Nothing to catch up: watchers hear live events only."""

    def on_restart(self, channel: str, epoch: str) -> None:
        """Nothing to tell: watchers keep no position in a channel's log."""
