"""Bodies of the realtime management routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from agenthub.core.jsondata import JsonObject
from agenthub.realtime.channels import CHANNEL_PATTERN

EVENT_NAME_PATTERN = r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$"


class ConnectionOut(BaseModel):
    connection_id: str
    user_id: str
    transport: Literal["ws", "sse"]
    node: str
    connected_at: str
    channels: list[str]


class RoomOut(BaseModel):
    channel: str
    members: int


class EventOut(BaseModel):
    type: Literal["event"] = "event"
    channel: str
    offset: int
    epoch: str
    event: str
    data: dict[str, Any]
    ts: str


class ChannelHistory(BaseModel):
    channel: str
    epoch: str = Field(description="The log's epoch; it changes when history starts over")
    offset: int = Field(description="The channel's last offset")
    recovered: bool = Field(description="False when events after `since` are no longer kept")
    data: list[EventOut]


class BroadcastIn(BaseModel):
    channel: str = Field(pattern=CHANNEL_PATTERN, max_length=140)
    event: str = Field(pattern=EVENT_NAME_PATTERN, max_length=64, examples=["system.notification"])
    data: JsonObject = Field(default_factory=dict)


class Published(BaseModel):
    channel: str
    event: str
    offset: int
    epoch: str


class RealtimeStats(BaseModel):
    backend: Literal["memory", "redis"]
    node: str
    connections: int = Field(description="Connections on every node")
    node_connections: int
    node_channels: int = Field(description="Channels this node receives live")
    node_subscriptions: int
    events_received: int
    events_delivered: int
    slow_consumer_closes: int
    flood_closes: int
    heartbeat_closes: int
