"""The operation mix of a virtual user: what a chat client does, in what proportion."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class Operation(StrEnum):
    LOGIN = "login"
    LIST_SESSIONS = "list_sessions"
    CREATE_SESSION = "create_session"
    POST_MESSAGE = "post_message"
    PAGE_HISTORY = "page_history"
    GET_SESSION = "get_session"


# Relative weights of the operations a user picks freely. A chat client writes a message,
# scrolls its history, opens a session, refreshes the list; it logs in again rarely (a login
# hashes a password, the most expensive request there is). Sessions are created by the
# scenario itself: first, and then every `messages_per_session` messages.
MIX: dict[Operation, float] = {
    Operation.POST_MESSAGE: 35,
    Operation.PAGE_HISTORY: 25,
    Operation.GET_SESSION: 20,
    Operation.LIST_SESSIONS: 15,
    Operation.LOGIN: 0.2,
}


@dataclass(frozen=True)
class Scenario:
    """Chooses each virtual user's next operation."""

    messages_per_session: int = 20

    def next_operation(
        self, rng: random.Random, *, logged_in: bool, posted_in_current: int | None
    ) -> Operation:
        """Log in first; create a session when there is none or the current one is full;
        otherwise draw from the mix. `posted_in_current` is None without a session."""
        if not logged_in:
            return Operation.LOGIN
        if posted_in_current is None or posted_in_current >= self.messages_per_session:
            return Operation.CREATE_SESSION
        return rng.choices(list(MIX), list(MIX.values()))[0]
