"""The in-process broker of embedded mode: logs, fan-out and presence in this process."""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from agenthub.realtime.broker import BrokerListener, Event, History, JsonDict


def new_epoch() -> str:
    return secrets.token_hex(4)


SWEEP_SECONDS = 1.0


@dataclass
class _Log:
    history_size: int
    epoch: str = field(default_factory=new_epoch)
    offset: int = 0
    lost: bool = False
    touched: float = field(default_factory=time.monotonic)
    events: deque[Event] = field(init=False)

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.history_size)


class MemoryBroker:
    """Everything lives in this process; `publish` delivers synchronously, in offset order."""

    name = "memory"

    def __init__(self, *, history: int, history_ttl: float) -> None:
        """Each channel keeps its last `history` events, for `history_ttl` seconds after its
        last publish."""
        self._size = history
        self._ttl = history_ttl
        self._logs: dict[str, _Log] = {}
        self._swept = 0.0
        self._subscribed: set[str] = set()
        self._presence: dict[str, dict[str, tuple[float, JsonDict]]] = {}
        self._listener: BrokerListener | None = None

    async def start(self, listener: BrokerListener) -> None:
        self._listener = listener

    async def close(self) -> None:
        self._listener = None

    async def ping(self) -> None:
        return None

    def _log(self, channel: str) -> _Log:
        """The channel's log; one idle for longer than the TTL starts over with a new epoch."""
        now = time.monotonic()
        current = self._logs.get(channel)
        if current is None or now - current.touched > self._ttl:
            self._sweep(now)
            current = self._logs[channel] = _Log(self._size)
        current.touched = now
        return current

    def _sweep(self, now: float) -> None:
        """Drop expired logs; at most once per `SWEEP_SECONDS`, since a sweep reads every
        channel and a new channel (each job has one) would otherwise cost a full pass."""
        if now - self._swept < SWEEP_SECONDS:
            return
        self._swept = now
        expired = [name for name, item in self._logs.items() if now - item.touched > self._ttl]
        for name in expired:
            del self._logs[name]

    async def publish(self, channel: str, event: str, data: JsonDict, ts: str) -> Event:
        channel_log = self._log(channel)
        channel_log.offset += 1
        item = Event(channel, channel_log.offset, channel_log.epoch, event, data, ts)
        channel_log.events.append(item)
        if self._listener is not None and channel in self._subscribed:
            self._listener.on_event(item)
        return item

    async def restart(self, channel: str) -> str:
        self._sweep(time.monotonic())
        channel_log = self._logs[channel] = _Log(self._size, lost=True)
        if self._listener is not None and channel in self._subscribed:
            self._listener.on_restart(channel, channel_log.epoch)
        return channel_log.epoch

    async def subscribe(self, channel: str) -> None:
        self._subscribed.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._subscribed.discard(channel)

    async def history(self, channel: str, after: int | None = 0) -> History:
        channel_log = self._log(channel)
        events = [] if after is None else [e for e in channel_log.events if e.offset > after]
        return History(channel_log.epoch, channel_log.offset, events, channel_log.lost)

    async def set_members(self, key: str, members: Mapping[str, JsonDict], ttl: float) -> None:
        expires = time.monotonic() + ttl
        entries = self._presence.setdefault(key, {})
        for member_id, info in members.items():
            entries[member_id] = (expires, info)

    async def remove_member(self, key: str, member_id: str) -> None:
        entries = self._presence.get(key)
        if entries is not None:
            entries.pop(member_id, None)
            if not entries:
                del self._presence[key]

    async def members(self, key: str) -> list[JsonDict]:
        entries = self._presence.get(key, {})
        now = time.monotonic()
        for member_id in [m for m, (expires, _) in entries.items() if expires <= now]:
            del entries[member_id]
        return [info for _, info in entries.values()]

    async def member_keys(self, prefix: str) -> list[str]:
        keys = [key for key in self._presence if key.startswith(prefix)]
        return [key for key in keys if await self.members(key)]
