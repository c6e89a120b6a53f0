"""Channel names and who may use them.

`user:{id}` (own notifications), `session:{id}`, `job:{id}`, `workflow:{id}` (own resources),
`room:{name}` (any signed-in user) and `system` (administrators). The packages that own a
resource family register its ownership check with `channel_family` (`sessions.tasks`,
`jobs.kinds`); another user's resource is reported exactly like a missing one. Who is in a
room is shown only to those in it (`sees_members`).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import FromClause, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agenthub.core.channels import ROOM, SYSTEM, USER, ChannelFamily

CHANNEL_PATTERN = r"^(system|(user|session|job|workflow|room):[A-Za-z0-9_.:\-]{1,128})$"
_CHANNEL = re.compile(CHANNEL_PATTERN)
ROOM_PREFIX = ROOM("")


@dataclass(frozen=True)
class Principal:
    """Who holds a realtime connection, and with which credential: the login of an access
    token or an API key, valid until `expires_at` (None: until revoked)."""

    user_id: str
    is_admin: bool
    login_id: str | None = None
    api_key_id: str | None = None
    expires_at: datetime | None = None


class ChannelRefused(Exception):
    """The channel does not exist for this caller, or is not theirs (`code` says which)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


OwnershipCheck = Callable[[AsyncSession, str, str], Awaitable[bool]]


def owner_check(table: FromClause) -> OwnershipCheck:
    """The check of a table with `id` and `user_id`: does this user own the row with this id."""
    query = select(table.c.id).where(
        table.c.id == bindparam("key"), table.c.user_id == bindparam("user_id")
    )

    async def owns(db: AsyncSession, user_id: str, key: str) -> bool:
        return await db.scalar(query, {"key": key, "user_id": user_id}) is not None

    return owns


OWNERSHIP: dict[str, OwnershipCheck] = {}
"""Family prefix → does this user own the resource with this key."""


def channel_family(family: ChannelFamily, owns: OwnershipCheck) -> None:
    """Let a user use `family`'s channels of the resources `owns` says are theirs."""
    OWNERSHIP[family.prefix] = owns


def is_room(channel: str) -> bool:
    return channel.startswith(ROOM_PREFIX)


def sees_members(who: Principal, members: Iterable[Mapping[str, Any]]) -> bool:
    """Whether `who` may see who is in a room with these `members` (presence entries): an
    administrator, or a user with a connection in it. Seeing is being seen: joining a room
    announces the user to it."""
    return who.is_admin or any(member.get("user_id") == who.user_id for member in members)


def check_name(channel: str) -> None:
    if not _CHANNEL.match(channel):
        raise ChannelRefused(
            "invalid_channel",
            "Channels are user:{id}, session:{id}, job:{id}, workflow:{id}, room:{name} or "
            "system; names use letters, digits and _ . : - (at most 128).",
        )


async def authorize(
    sessions: async_sessionmaker[AsyncSession], who: Principal, channel: str
) -> None:
    """Return if `who` may subscribe to (and read the history of) `channel`; raise otherwise.
    Only resource channels open a database session."""
    check_name(channel)
    if channel == SYSTEM:
        if not who.is_admin:
            raise ChannelRefused("forbidden", "The system channel is for administrators.")
        return
    if ROOM.key_of(channel) is not None:
        return
    kind, _, name = channel.partition(":")
    if kind == USER.prefix:
        allowed = name == who.user_id
    else:
        check = OWNERSHIP.get(kind)
        allowed = False
        if check is not None:
            async with sessions() as db:
                allowed = await check(db, who.user_id, name)
    if not allowed:
        raise ChannelRefused("not_found", f"Channel {channel!r} not found.")
