"""Client frames of `/v1/ws`, validated with one discriminated union on `type`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from agenthub.core.jsondata import JsonObject
from agenthub.realtime.channels import CHANNEL_PATTERN, ChannelRefused, check_name

Channel = Annotated[str, Field(pattern=CHANNEL_PATTERN, max_length=140)]
FrameId = Annotated[str | int, Field(union_mode="left_to_right")]
MAX_HISTORY_LIMIT = 1000


class Position(BaseModel):
    """A place in a channel's log: after `offset`, in log `epoch` (omitted: any epoch)."""

    model_config = ConfigDict(extra="forbid")

    offset: int = Field(ge=0)
    epoch: str | None = Field(default=None, max_length=64)


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: FrameId | None = None


class Subscribe(_Frame):
    type: Literal["subscribe"]
    channel: Channel
    since: Position | None = None


class Unsubscribe(_Frame):
    type: Literal["unsubscribe"]
    channel: Channel


class Publish(_Frame):
    type: Literal["publish"]
    channel: Channel
    data: JsonObject


class Presence(_Frame):
    type: Literal["presence"]
    channel: Channel


class History(_Frame):
    type: Literal["history"]
    channel: Channel
    since: Position | None = None
    limit: int = Field(default=100, ge=1, le=MAX_HISTORY_LIMIT)


class Heartbeat(_Frame):
    type: Literal["heartbeat"]


class Ping(_Frame):
    type: Literal["ping"]


class Auth(_Frame):
    """A fresh access token (or API key) of the same user, before the current one expires."""

    type: Literal["auth"]
    token: str = Field(min_length=1, max_length=4096)


ClientFrame = Annotated[
    Subscribe | Unsubscribe | Publish | Presence | History | Heartbeat | Ping | Auth,
    Field(discriminator="type"),
]
FRAME_TYPES = (
    "subscribe",
    "unsubscribe",
    "publish",
    "presence",
    "history",
    "heartbeat",
    "ping",
    "auth",
)
_frames: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


class FrameError(Exception):
    """A frame the server cannot act on; answered with an `error` frame."""

    def __init__(self, code: str, message: str, frame_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.frame_id = frame_id


def id_of(raw: Any) -> str | int | None:
    """The `id` a reply to this decoded frame echoes (None if it has no usable one)."""
    frame_id = raw.get("id") if isinstance(raw, dict) else None
    return frame_id if isinstance(frame_id, str | int) else None


def parse_frame(raw: Any) -> ClientFrame:
    """The frame in `raw` (decoded JSON), or `FrameError` saying what is wrong with it."""
    if not isinstance(raw, dict):
        raise FrameError("invalid_frame", "A frame is a JSON object with a type.")
    frame_id = id_of(raw)
    if raw.get("type") not in FRAME_TYPES:
        raise FrameError(
            "unknown_type", f"type must be one of: {', '.join(FRAME_TYPES)}.", frame_id
        )
    try:
        return _frames.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["loc"][1:] == ("channel",) and isinstance(raw.get("channel"), str):
            try:  # a malformed channel name: `invalid_channel`, explaining the naming rules
                check_name(raw["channel"])
            except ChannelRefused as refused:
                raise FrameError(refused.code, refused.message, frame_id) from None
        where = ".".join(str(part) for part in first["loc"][1:]) or "frame"
        raise FrameError("invalid_frame", f"{where}: {first['msg']}", frame_id) from None


def error_frame(code: str, message: str, frame_id: Any = None) -> dict[str, Any]:
    return {"type": "error", "id": frame_id, "code": code, "message": message}


def subscribed_frame(
    channel: str, epoch: str, offset: int, recovered: bool, frame_id: Any = None
) -> dict[str, Any]:
    """The answer to `subscribe`; unsolicited (no id, `recovered: false`) when events of a
    live subscription were lost."""
    return {
        "type": "subscribed",
        "id": frame_id,
        "channel": channel,
        "offset": offset,
        "epoch": epoch,
        "recovered": recovered,
    }


def parse_position(value: str) -> Position:
    """`<epoch>:<offset>` (an SSE event id) or a bare `<offset>` (`0`: all retained history)."""
    epoch, _, offset = value.rpartition(":")
    if not offset.isdigit() or len(offset) > 18 or len(epoch) > 64:
        raise ValueError("expected <epoch>:<offset> or an offset such as 0")
    return Position(offset=int(offset), epoch=epoch or None)
