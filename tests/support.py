"""Helpers shared by tests (import as `from support import ...`)."""

from __future__ import annotations

from dataclasses import dataclass

PASSWORD = "correct horse battery"


@dataclass
class Account:
    """A registered, logged-in user as a test drives it."""

    id: str
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}
