"""Structured logging: JSON lines in production, pretty console on a TTY; request id bound."""

from __future__ import annotations

import functools
import logging
import re
import sys
from typing import Any

import structlog

_SECRET_KEYS = ("password", "token", "secret", "api_key", "authorization", "cookie")
# Credentials in a URL's query, as uvicorn logs a WebSocket handshake (`/v1/ws?token=...`).
_SECRET_QUERY = re.compile(r"(?i)\b(token|access_token|api_key)=[^&\s\"']+")


@functools.lru_cache(maxsize=1024)
def _is_secret(key: str) -> bool:
    """Whether a log field of this name may hold a secret (field names are few)."""
    return any(marker in key.lower() for marker in _SECRET_KEYS)


def _redact(_: Any, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    for key in [key for key in event if _is_secret(key)]:
        event[key] = "**********"
    message = event.get("event")
    if isinstance(message, str) and "=" in message:
        event["event"] = _SECRET_QUERY.sub(r"\1=**********", message)
    return event


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Configure structlog and route stdlib logging (uvicorn, alembic) through it."""
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        # Lines below the level are dropped before any other processor runs.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if json_output else _identity,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Our middleware logs every request with its id; uvicorn's access line would repeat it.
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic announces each of its plugins at INFO whenever it is imported: noise, not news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _identity(_: Any, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    return event
