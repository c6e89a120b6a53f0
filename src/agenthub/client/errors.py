"""Exceptions raised by the agenthub client."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A non-2xx REST response; `problem` is its `application/problem+json` body."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        super().__init__(f"{status} {self.title}" + (f": {self.detail}" if self.detail else ""))

    @property
    def title(self) -> str:
        return str(self.problem.get("title", ""))

    @property
    def detail(self) -> str | None:
        detail = self.problem.get("detail")
        return None if detail is None else str(detail)

    @property
    def type(self) -> str | None:
        kind = self.problem.get("type")
        return None if kind is None else str(kind)


class RealtimeError(Exception):
    """An `error` frame answering a request (`code` is e.g. `forbidden`, `not_found`)."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class AuthenticationFailed(RealtimeError):
    """The server refused the token (close code 4401 or HTTP 401/403): no reconnect."""

    def __init__(self, message: str = "authentication failed") -> None:
        super().__init__("unauthorized", message)


class ConnectionLost(RealtimeError):
    """The connection dropped (or the client was closed) before a request was answered.

    The request may or may not have taken effect."""

    def __init__(self, message: str = "connection lost") -> None:
        super().__init__("connection_lost", message)
