"""What keeps a node's connections healthy in the background: heartbeats (and closing the
WebSockets that went silent), the presence entries refreshed before they expire, and open
connections' credentials checked again when one ends somewhere."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.exc import SQLAlchemyError

from agenthub.core.events import CREDENTIALS_CHANNEL
from agenthub.realtime.auth import still_active
from agenthub.realtime.broker import BrokerUnavailable, Event, JsonDict
from agenthub.realtime.connection import CONNECTIONS_KEY, CloseCode, Connection

if TYPE_CHECKING:
    from agenthub.realtime.hub import Hub

log = structlog.get_logger("agenthub.realtime")

RECHECK_BATCH = 500  # connections whose credentials one query checks
WATCH_RETRY_SECONDS = 1.0


class Upkeep:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def start(self) -> list[asyncio.Task[None]]:
        """The loops, to cancel when the hub closes."""
        return [
            asyncio.create_task(self.heartbeats()),
            asyncio.create_task(self.refresh_presence()),
            asyncio.create_task(self.watch_credentials()),
        ]

    async def heartbeats(self) -> None:
        """Send `heartbeat` every interval; close WebSockets silent for two intervals."""
        interval = self.hub.settings.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self.hub.connections.values()):
                if connection.transport != "ws":
                    continue
                if now - connection.last_seen > 2 * interval:
                    self.hub.stats.heartbeat_closes += 1
                    connection.close(CloseCode.HEARTBEAT_TIMEOUT, "no frame for two heartbeats")
                else:
                    connection.send({"type": "heartbeat"})

    async def refresh_presence(self) -> None:
        """Refresh this node's entries in the shared presence sets before they expire."""
        ttl = self.hub.settings.presence_ttl_seconds
        while True:
            await asyncio.sleep(ttl / 3)
            rooms: dict[str, dict[str, JsonDict]] = {}
            for connection in list(self.hub.connections.values()):
                for subscription in connection.subscriptions.values():
                    if subscription.presence is not None:
                        rooms.setdefault(subscription.channel, {})[connection.id] = (
                            subscription.presence
                        )
            entries = {c.id: c.info(self.hub.node) for c in self.hub.connections.values()}
            try:
                if entries:
                    await self.hub.broker.set_members(CONNECTIONS_KEY, entries, ttl)
                for channel, members in rooms.items():
                    await self.hub.broker.set_members(channel, members, ttl)
            except BrokerUnavailable as exc:
                log.warning("presence_not_refreshed", error=str(exc))

    async def watch_credentials(self) -> None:
        """Hear on every node of credentials that ended (retried until the broker listens)."""
        hub = self.hub
        while True:
            try:
                await hub.watchers.watch(CREDENTIALS_CHANNEL, self.credentials_revoked)
                return
            except BrokerUnavailable:
                await asyncio.sleep(WATCH_RETRY_SECONDS)

    def credentials_revoked(self, event: Event) -> None:
        user_id = event.data.get("user_id")
        affected = [c for c in self.hub.connections.values() if c.user_id == user_id]
        if affected:
            self.hub.spawn(self.recheck(affected))

    async def recheck(self, connections: list[Connection]) -> None:
        """Close (4401) the connections whose login or API key ended or whose user is gone."""
        for start in range(0, len(connections), RECHECK_BATCH):
            held = [(c, c.principal) for c in connections[start : start + RECHECK_BATCH]]
            try:
                active = await still_active(self.hub.database, [p for _, p in held])
            except (SQLAlchemyError, OSError):
                log.warning("credentials_not_checked", connections=len(held), exc_info=True)
                continue
            for connection, principal in held:
                credential = principal.login_id or principal.api_key_id
                if connection.principal is principal and credential not in active:
                    connection.close(CloseCode.UNAUTHORIZED, "credentials revoked")
