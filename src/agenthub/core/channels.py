"""Channel names. Each family of channels (`session:{id}`, `job:{id}`...) is built and parsed
by one `ChannelFamily`, which those who publish on it and the realtime authorizer share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelFamily:
    """Channels named `{prefix}:{key}`."""

    prefix: str

    def __call__(self, key: str) -> str:
        """The channel of `key` (a resource's id, a user's id, a room's name)."""
        return f"{self.prefix}:{key}"

    def key_of(self, channel: str) -> str | None:
        """The key of `channel` if it belongs to this family."""
        prefix, colon, key = channel.partition(":")
        return key if colon and prefix == self.prefix else None


USER = ChannelFamily("user")
"""A user's own notifications."""
ROOM = ChannelFamily("room")
"""Rooms any signed-in user may join."""
SYSTEM = "system"
"""Deployment-wide notices, for administrators."""
