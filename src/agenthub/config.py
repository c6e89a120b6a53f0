"""One typed settings object: environment (`AGENTHUB_*`) first, `.env` second."""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from limits import parse_many
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRET_FILE = ".agenthub-secret"  # noqa: S105 - a file name
ENV_PREFIX = "AGENTHUB_"
DATABASE_URL_FORMS = (
    "postgresql+asyncpg://user:password@host:5432/name or sqlite+aiosqlite:///path/to/agenthub.db"
)
MIN_SECRET_BYTES = 32  # of AGENTHUB_SECRET_KEY in production
# Placeholders of the shipped examples (deploy/env), compared without case or punctuation:
# "change-me-to-a-long-random-string" and its variants.
PLACEHOLDER_SECRET_MARKERS = ("changeme",)
DEFAULT_ALLOWED_FILE_TYPES = (
    "text/plain",
    "text/markdown",
    "text/csv",
    "application/json",
    "application/x-yaml",
    "application/pdf",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/zip",
)


class Settings(BaseSettings):
    """Every setting of agenthub; see `agenthub config` for the effective values."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    # Before `secret_key`, whose check depends on it.
    environment: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite+aiosqlite:///./agenthub.db"
    redis_url: str | None = None
    secret_key: SecretStr | None = None
    secret_file: Path = Path(SECRET_FILE)

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    auto_migrate: bool | None = None  # default: only for SQLite (embedded mode)

    # Proxies (addresses or networks, "*" for any) whose X-Forwarded-For and X-Forwarded-Proto
    # `agenthub serve` believes; empty: none, the client address is the connection's.
    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = 1_048_576
    slow_request_seconds: float = 2.0
    alert_cpu_percent: float = Field(default=80, ge=0)
    alert_memory_percent: float = Field(default=90, ge=0)
    alert_error_rate: float = Field(default=0.1, ge=0)  # 5xx answers per second, last minute
    alert_ws_disconnections_per_minute: float = Field(default=5, ge=0)
    alert_queue_age_seconds: float = Field(default=300, ge=0)
    status_interval_seconds: float = Field(default=2, gt=0)  # metrics.update on `system`

    access_token_minutes: float = Field(default=15, gt=0)
    refresh_token_days: int = 30
    cookie_secure: bool = True
    password_time_cost: int = 3
    password_memory_kib: int = 65536
    # Hashing threads (default: one core fewer than the machine has) and how many more calls
    # may wait for one before a sign-in is refused with 503 + Retry-After.
    password_hash_threads: int | None = Field(default=None, ge=1)
    password_hash_queue: int = Field(default=16, ge=0)
    login_limit_ip: str = "30/minute"
    login_limit_account: str = "10/minute"
    # Every /v1 route group (first path segment after /v1) is limited per user and per client IP,
    # in moving windows; `rate_limits` overrides the per-user limit of some groups
    # ("files=120/minute,generate=30/minute").
    rate_limit_enabled: bool = True
    rate_limit_user: str = "1200/minute"
    rate_limit_ip: str = "2400/minute"
    rate_limits: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    ws_connect_limit: str = "60/minute"  # WebSocket handshakes per client IP
    account_retention_days: int = 30

    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_timeout_seconds: float = 5.0

    max_sessions_per_agent_type: int = 5
    job_lease_seconds: int = 30
    files_dir: Path = Path("./files")
    max_upload_files: int = Field(default=10, ge=1, le=1000)
    max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # Content types an upload may have, as content sniffing sees them (not as the client says).
    files_allowed_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_FILE_TYPES)
    )
    redis_prefix: str = "agenthub"
    # Cache of expensive reads (stats routes): in Redis when configured, else in-process.
    cache_ttl_seconds: float = Field(default=60, ge=0, le=3600)  # a backstop; 0: no caching
    cache_max_entries: int = Field(default=10_000, ge=1)  # the in-process cache's bound
    cache_timeout_seconds: float = Field(default=0.25, gt=0)  # Redis connect and socket
    realtime_history_size: int = Field(default=1000, ge=1, le=100_000)
    realtime_history_ttl_seconds: float = Field(default=600, gt=0)
    # Each broker call (Redis: connect, answer, a pooled connection) gives up after this long.
    broker_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    # Events waiting to be published per process; past it, their channels start a new epoch.
    realtime_relay_queue_size: int = Field(default=10_000, ge=1)
    heartbeat_interval: float = Field(default=30, gt=0)
    ws_send_queue_size: int = Field(default=1000, ge=1)
    ws_max_frame_bytes: int = Field(default=65_536, ge=256)
    ws_frames_per_second: int = Field(default=50, ge=1)
    ws_close_timeout_seconds: float = Field(default=5, gt=0)
    presence_ttl_seconds: float = Field(default=60, gt=0)
    sse_keepalive_seconds: float = Field(default=15, gt=0)
    worker_enabled: bool = True  # the in-process worker of `agenthub serve` (--no-worker)
    worker_concurrency: int = Field(default=4, ge=1, le=1000)
    worker_kinds: Annotated[list[str], NoDecode] = Field(default_factory=list)  # empty: all
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)  # worker /metrics
    job_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    job_poll_seconds: float = Field(default=2.0, gt=0)
    job_grace_seconds: float = Field(default=10.0, ge=0)
    job_backoff_base_seconds: float = Field(default=1.0, gt=0)
    job_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    job_default_timeout_seconds: float = Field(default=300.0, gt=0)
    job_retention_days: float = Field(default=7, gt=0)
    deleted_retention_days: float = Field(default=30, gt=0)
    maintenance_interval_seconds: float = Field(default=3600, gt=0)
    default_runner: Literal["openai", "cli", "echo"] = "echo"
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_model: str = "gpt-4o-mini"
    openai_timeout_seconds: float = Field(default=120, gt=0)
    cli_command: str | None = None
    cli_prompt_mode: Literal["argument", "stdin"] = "argument"
    cli_timeout_seconds: float = Field(default=300, gt=0)
    runner_breaker_failures: int = Field(default=5, ge=1)
    runner_breaker_reset_seconds: float = Field(default=30, gt=0)

    @field_validator(
        "forwarded_allow_ips",
        "cors_origins",
        "files_allowed_types",
        "worker_kinds",
        "job_modules",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [o.strip() for o in value.split(",") if o.strip()]
        return value

    @field_validator("rate_limits", mode="before")
    @classmethod
    def _split_pairs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            group, sep, limit = part.partition("=")
            if not sep or not group.strip():
                raise ValueError(f"{part!r} is not group=limit (e.g. files=120/minute)")
            pairs[group.strip()] = limit.strip()
        return pairs

    @field_validator("secret_key")
    @classmethod
    def _strong_in_production(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        if value is not None and info.data.get("environment") == "production":
            _check_production_secret(value.get_secret_value())
        return value

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        if "*" in value:
            return ["*"]
        for proxy in value:
            try:
                ipaddress.ip_network(proxy)
            except ValueError:
                raise ValueError(
                    f"{proxy!r} is not an IP address or network (e.g. 10.0.0.5, 10.0.0.0/8, "
                    "or * for any)"
                ) from None
        return value

    @field_validator("database_url")
    @classmethod
    def _database_driver(cls, value: str) -> str:
        return _database_url(value)

    @field_validator(
        "login_limit_ip",
        "login_limit_account",
        "rate_limit_user",
        "rate_limit_ip",
        "ws_connect_limit",
    )
    @classmethod
    def _check_limit(cls, value: str) -> str:
        return _rate_limit(value)

    @field_validator("rate_limits")
    @classmethod
    def _check_limits(cls, value: dict[str, str]) -> dict[str, str]:
        return {group: _rate_limit(limit) for group, limit in value.items()}

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def migrate_on_start(self) -> bool:
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate

    @cached_property
    def signing_key(self) -> str:
        """The JWT signing secret: configured, or generated once and kept in `secret_file`."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.secret_file
        if path.exists():
            return path.read_text().strip()
        value = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value)
        return value

    def masked(self) -> dict[str, Any]:
        """The effective settings with secrets and credentials in URLs masked."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                out[name] = "**********"
            elif name.endswith("_url") and isinstance(value, str):
                out[name] = _mask_url(value)
            else:
                out[name] = str(value) if isinstance(value, Path) else value
        return out


def variable(field: str) -> str:
    """The environment variable of a setting: `port` -> `AGENTHUB_PORT`."""
    return f"{ENV_PREFIX}{field.upper()}"


def unknown_variables(names: Iterable[str]) -> list[str]:
    """A warning for each `AGENTHUB_*` name among `names` that is no setting (a typo is
    otherwise silently ignored), with the closest setting's name when one is close."""
    known = [variable(field) for field in Settings.model_fields]
    warnings = []
    for name in sorted({n.upper() for n in names if n.upper().startswith(ENV_PREFIX)}):
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else " (see `agenthub config`)"
        warnings.append(f"{name} is not an agenthub setting{hint}")
    return warnings


def _database_url(url: str) -> str:
    """The URL with the driver agenthub uses: `postgres://` and `postgresql://` (as hosting
    providers hand them out, libpq's `sslmode` included) become `postgresql+asyncpg://`,
    `sqlite://` becomes `sqlite+aiosqlite://`; any other database is refused."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return "postgresql+asyncpg://" + re.sub(r"([?&])sslmode=", r"\1ssl=", rest)
    if sep and scheme in ("sqlite", "sqlite+aiosqlite"):
        return "sqlite+aiosqlite://" + rest
    raise ValueError(
        f"{_mask_url(url)!r} is not a supported database URL; use {DATABASE_URL_FORMS}"
    )


def _check_production_secret(value: str) -> None:
    """Refuse a signing secret anyone could guess or brute-force: shorter than
    `MIN_SECRET_BYTES`, or a placeholder from the shipped examples."""
    normalized = re.sub(r"[^a-z0-9]", "", value.lower())
    if any(marker in normalized for marker in PLACEHOLDER_SECRET_MARKERS):
        problem = "is a placeholder from the examples"
    elif len(value.encode()) < MIN_SECRET_BYTES:
        problem = f"has {len(value.encode())} bytes, fewer than {MIN_SECRET_BYTES}"
    else:
        return
    raise ValueError(
        f"the signing secret {problem}, refused in production; set it to a random value of "
        f"{MIN_SECRET_BYTES} bytes or more, e.g. the output of `openssl rand -hex 32`"
    )


def _rate_limit(value: str) -> str:
    """A single moving-window limit such as "100/minute" or "10 per 2 seconds"."""
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ValueError(f"{value!r} is not a rate limit such as '100/minute'")
    return value


def _mask_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url
