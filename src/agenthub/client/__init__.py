"""A Python client for agenthub: `AgentHubClient` for the REST API and `RealtimeClient` for
the `/v1/ws` WebSocket (resumable subscriptions, automatic reconnects). See the README."""

from __future__ import annotations

from agenthub.client.errors import ApiError, AuthenticationFailed, ConnectionLost, RealtimeError
from agenthub.client.realtime import RealtimeClient
from agenthub.client.rest import AgentHubClient
from agenthub.client.subscription import (
    Event,
    HistoryPage,
    Position,
    RecoveryFailed,
    Subscription,
)

__all__ = [
    "AgentHubClient",
    "ApiError",
    "AuthenticationFailed",
    "ConnectionLost",
    "Event",
    "HistoryPage",
    "Position",
    "RealtimeClient",
    "RealtimeError",
    "RecoveryFailed",
    "Subscription",
]
