"""Domain events: recorded in a unit of work, published only after it commits.

Services call `emit(db, ...)` next to the write; `Database.transaction` hands the recorded
events to the app's publisher once the commit succeeded, so no client ever hears of a change
that was rolled back. The publisher only queues them (`realtime.relay`): no write waits for
the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

_PENDING = "agenthub.events"

log = structlog.get_logger("agenthub.events")


def timestamp() -> str:
    """Now, as events carry it: ISO 8601 UTC with a `Z`."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class DomainEvent:
    channel: str
    event: str
    data: dict[str, Any]
    ts: str = field(default_factory=timestamp)


Publisher = Callable[[list[DomainEvent]], None]


class Recorder(Protocol):
    """A unit of work that records what to do after its commit: an ORM session, or a
    `db.unit.Unit`."""

    @property
    def info(self) -> dict[Any, Any]: ...


def emit(db: Recorder, channel: str, event: str, data: dict[str, Any]) -> None:
    """Record an event to publish on `channel` after this unit of work commits."""
    db.info.setdefault(_PENDING, []).append(DomainEvent(channel, event, data))


def take_pending(db: Recorder) -> list[DomainEvent]:
    pending: list[DomainEvent] = db.info.pop(_PENDING, [])
    return pending


def log_publisher(events: list[DomainEvent]) -> None:
    """The publisher until a realtime broker is wired: a debug line per event."""
    for item in events:
        log.debug("domain_event", channel=item.channel, domain_event=item.event)


CREDENTIALS_CHANNEL = "credentials"
"""An internal channel (no client may subscribe to it): `credentials.revoked` says that some of
a user's logins or API keys ended, so every node checks that user's open connections again."""


def credentials_revoked(db: AsyncSession, user_id: str) -> None:
    """Record, in this unit of work, that credentials of `user_id` ended (logout, password
    change, key deletion, account deletion...); once per user and unit of work."""
    data = {"user_id": user_id}
    pending = db.info.get(_PENDING, [])
    if not any(e.channel == CREDENTIALS_CHANNEL and e.data == data for e in pending):
        emit(db, CREDENTIALS_CHANNEL, "credentials.revoked", data)
