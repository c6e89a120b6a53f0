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
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
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

RunnerName = Literal["openai", "cli", "echo"]
"""The runners a job, an agent or the server's default may name (`agenthub.runners`)."""
McpServerName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class McpStdioServer(BaseModel):
    """An MCP server run as a subprocess, spoken to over its stdin and stdout."""

    model_config = ConfigDict(extra="forbid")

    command: str = Field(min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, SecretStr] = Field(default_factory=dict)
    """Set for the subprocess, over a minimal environment (`PATH`, `HOME`, ...)."""


class McpHttpServer(BaseModel):
    """An MCP server reached over Streamable HTTP."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(pattern=r"^https?://", max_length=2048)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Sent with every request (an `Authorization`, say)."""


McpServerConfig = McpStdioServer | McpHttpServer


class Settings(BaseSettings):
    """Every setting of agenthub; see `agenthub config` for the effective values."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        use_attribute_docstrings=True,  # each field's docstring is its description
    )

    # Before `secret_key`, whose check depends on it.
    environment: Literal["development", "production", "test"] = "development"
    """The kind of deployment; `production` refuses a signing secret shorter than 32 bytes or a
    placeholder of the examples."""
    database_url: str = "sqlite+aiosqlite:///./agenthub.db"
    """The database: `postgresql+asyncpg://...` or `sqlite+aiosqlite:///...` (`postgres://`,
    `postgresql://` and `sqlite://` get those drivers)."""
    redis_url: str | None = None
    """Redis shared by every process: realtime events, presence, rate limits, cache; needed by
    `agenthub serve --workers` above 1 and by `agenthub worker`."""
    secret_key: SecretStr | None = None
    """The secret that signs access tokens and CSRF tokens."""
    secret_file: Path = Path(SECRET_FILE)
    """Where the signing secret generated without `AGENTHUB_SECRET_KEY` is kept."""

    host: str = "127.0.0.1"
    """The address `agenthub serve` listens on (also a worker's `/metrics`)."""
    port: int = 8000
    """The port `agenthub serve` listens on."""
    log_level: str = "INFO"
    """The lowest level logged, e.g. `DEBUG`, `INFO`, `WARNING`."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """JSON lines or console output; `auto`: console on a terminal, JSON otherwise."""
    auto_migrate: bool | None = None
    """Migrate the database at start-up; default: only for SQLite (embedded mode)."""

    forwarded_allow_ips: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Proxies (addresses or networks, `*` for any) whose `X-Forwarded-For` and
    `X-Forwarded-Proto` `agenthub serve` believes; empty: none, the client address is the
    connection's."""
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins allowed cross-origin requests (CORS); realtime connections from them may also
    authenticate with the cookie."""
    max_body_bytes: int = 1_048_576
    """The largest request body (an upload may add its files' limits)."""
    slow_request_seconds: float = 2.0
    """Requests slower than this are logged as warnings."""
    alert_cpu_percent: float = Field(default=80, ge=0)
    """Machine CPU use above which the `HighCpu` alert fires."""
    alert_memory_percent: float = Field(default=90, ge=0)
    """Machine memory use above which the `HighMemory` alert fires."""
    alert_error_rate: float = Field(default=0.1, ge=0)
    """5xx answers per second, last minute, above which the `HighErrorRate` alert fires."""
    alert_ws_disconnections_per_minute: float = Field(default=5, ge=0)
    """WebSocket disconnections per minute above which the `WebSocketDisconnections` alert
    fires."""
    alert_queue_age_seconds: float = Field(default=300, ge=0)
    """Wait of the oldest due job above which the `JobQueueStalled` alert fires."""
    status_interval_seconds: float = Field(default=2, gt=0)
    """Interval of `metrics.update` events on the `system` channel."""

    access_token_minutes: float = Field(default=15, gt=0)
    """Lifetime of an access token."""
    refresh_token_days: int = 30
    """Lifetime of a login's refresh token (and of the refresh and CSRF cookies)."""
    cookie_secure: bool = True
    """Mark the auth cookies `Secure` (sent over HTTPS only)."""
    password_time_cost: int = 3
    """Argon2id time cost (passes) of password hashes."""
    password_memory_kib: int = 65536
    """Argon2id memory cost of password hashes, in KiB."""
    password_hash_threads: int | None = Field(default=None, ge=1)
    """Password hashing threads (default: one core fewer than the machine has)."""
    password_hash_queue: int = Field(default=16, ge=0)
    """How many more hashing calls may wait for a thread before a sign-in is refused with 503 +
    Retry-After."""
    login_limit_ip: str = "30/minute"
    """Registrations and logins per client IP."""
    login_limit_account: str = "10/minute"
    """Failed logins (and failed password changes) per account."""
    # Every /v1 route group (first path segment after /v1) is limited per user and per client IP,
    # in moving windows; `rate_limits` overrides the per-user limit of some groups
    # ("files=120/minute,generate=30/minute").
    rate_limit_enabled: bool = True
    """Limit the `/v1` route groups and WebSocket handshakes (the login limits always apply)."""
    rate_limit_user: str = "1200/minute"
    """Requests per user to each `/v1` route group."""
    rate_limit_ip: str = "2400/minute"
    """Requests per client IP to each `/v1` route group."""
    rate_limits: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    """Per-user limits of some route groups, overriding `AGENTHUB_RATE_LIMIT_USER`
    (`files=120/minute,generate=30/minute`)."""
    ws_connect_limit: str = "60/minute"
    """WebSocket handshakes per client IP."""
    account_retention_days: int = 30
    """Deleted accounts are purged, with all they owned, after this many days."""

    db_pool_size: int = 10
    """Connections kept open per process (PostgreSQL)."""
    db_max_overflow: int = 10
    """Connections a process may open beyond `AGENTHUB_DB_POOL_SIZE` (PostgreSQL)."""
    db_timeout_seconds: float = 5.0
    """Longest wait for a pooled connection, and to connect (PostgreSQL)."""

    max_sessions_per_agent_type: int = 5
    """Active sessions per user and agent type; one more archives the least recently active
    (0: no limit)."""
    job_lease_seconds: int = 30
    """A worker's lease on a claimed job, renewed while it runs; a job whose lease expired is
    taken back."""
    files_dir: Path = Path("./files")
    """The directory that stores uploaded files' content."""
    max_upload_files: int = Field(default=10, ge=1, le=1000)
    """Files per upload."""
    max_file_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    """The largest uploaded file."""
    files_allowed_types: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_ALLOWED_FILE_TYPES)
    )
    """Content types an upload may have, as content sniffing sees them (not as the client
    says)."""
    redis_prefix: str = "agenthub"
    """Prefix of agenthub's Redis keys (realtime, rate limits, cache)."""
    # Cache of expensive reads (stats routes): in Redis when configured, else in-process.
    cache_ttl_seconds: float = Field(default=60, ge=0, le=3600)
    """Lifetime of a cached read, a backstop (writes invalidate it); 0: no caching."""
    cache_max_entries: int = Field(default=10_000, ge=1)
    """The in-process cache's bound, in entries."""
    cache_timeout_seconds: float = Field(default=0.25, gt=0)
    """Timeout of the cache's Redis connect and socket."""
    realtime_history_size: int = Field(default=1000, ge=1, le=100_000)
    """Events each channel's log keeps for resuming."""
    realtime_history_ttl_seconds: float = Field(default=600, gt=0)
    """A channel's log is dropped after this long with nothing published to it or read from
    it."""
    broker_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
    """Each broker call (Redis: connect, answer, a pooled connection) gives up after this
    long."""
    realtime_relay_queue_size: int = Field(default=10_000, ge=1)
    """Events waiting to be published per process; past it, their channels start a new
    epoch."""
    heartbeat_interval: float = Field(default=30, gt=0)
    """Interval of `heartbeat` frames; a WebSocket silent for two intervals is closed (4408)."""
    ws_send_queue_size: int = Field(default=1000, ge=1)
    """Frames queued per connection; a client that lets it fill is closed (4008)."""
    ws_max_frame_bytes: int = Field(default=65_536, ge=256)
    """The largest client frame; a larger one closes the WebSocket (1009)."""
    ws_frames_per_second: int = Field(default=50, ge=1)
    """Client frames handled per second per WebSocket; more are answered `rate_limited`, twice
    as many close it (4429)."""
    ws_close_timeout_seconds: float = Field(default=5, gt=0)
    """Longest wait to send a WebSocket's close frame, and at shutdown for connections to
    close."""
    presence_ttl_seconds: float = Field(default=60, gt=0)
    """Presence entries expire unless refreshed within this (every third of it), so those of a
    dead node vanish."""
    sse_keepalive_seconds: float = Field(default=15, gt=0)
    """An SSE stream gets a `: keep-alive` comment after this long with nothing else to send."""
    worker_enabled: bool = True
    """Run the in-process worker of `agenthub serve` (`--no-worker` turns it off)."""
    worker_concurrency: int = Field(default=4, ge=1, le=1000)
    """Jobs a worker runs at once."""
    worker_kinds: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Job kinds a worker runs; empty: all."""
    worker_metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """Port of `agenthub worker`'s own `/metrics`."""
    job_modules: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Python modules imported at start to register the deployment's own job kinds."""
    job_poll_seconds: float = Field(default=2.0, gt=0)
    """How often a worker polls for jobs when the broker has not woken it."""
    job_grace_seconds: float = Field(default=10.0, ge=0)
    """On SIGTERM or SIGINT, how long running jobs may finish before they are handed back."""
    job_backoff_base_seconds: float = Field(default=1.0, gt=0)
    """Base of the exponential retry backoff (with full jitter)."""
    job_backoff_cap_seconds: float = Field(default=300.0, gt=0)
    """Cap of the retry backoff."""
    job_default_timeout_seconds: float = Field(default=300.0, gt=0)
    """Timeout of a job attempt when neither the request nor the kind sets one."""
    job_retention_days: float = Field(default=7, gt=0)
    """Finished jobs are deleted after this many days."""
    deleted_retention_days: float = Field(default=30, gt=0)
    """Deleted sessions are purged after this many days."""
    maintenance_interval_seconds: float = Field(default=3600, gt=0)
    """Interval of the maintenance jobs (purges, job clean-up)."""
    default_runner: RunnerName = "echo"
    """The runner of a job that names none."""
    openai_base_url: str | None = None
    """The OpenAI-compatible Chat Completions endpoint of the `openai` runner."""
    openai_api_key: SecretStr | None = None
    """The API key of the `openai` runner's endpoint."""
    openai_model: str = "gpt-4o-mini"
    """The `openai` runner's model when a request names none."""
    openai_timeout_seconds: float = Field(default=120, gt=0)
    """Timeout of the `openai` runner's requests."""
    cli_command: str | None = None
    """The command of the `cli` runner, run per request (split like a shell would, never run by
    one)."""
    cli_prompt_mode: Literal["argument", "stdin"] = "argument"
    """How the `cli` runner passes the prompt: as the last argument, or as stdin."""
    cli_timeout_seconds: float = Field(default=300, gt=0)
    """Longest run of the `cli` command; a job's `timeout_s` may only shorten it."""
    mcp_servers: dict[McpServerName, McpServerConfig] = Field(default_factory=dict)
    """The MCP servers agents may use as tools, by name, in the `mcpServers` shape MCP clients
    share (JSON): `{"calc": {"command": "python", "args": ["calc.py"], "env": {}}}` runs a stdio
    server, `{"search": {"url": "http://host/mcp", "headers": {}}}` reaches a Streamable HTTP
    one."""
    mcp_tool_timeout_seconds: float = Field(default=60, gt=0)
    """Longest MCP tool call; a slower one fails."""
    runner_breaker_failures: int = Field(default=5, ge=1)
    """Consecutive transient failures after which a runner's circuit breaker fails fast."""
    runner_breaker_reset_seconds: float = Field(default=30, gt=0)
    """How long an open breaker fails fast before it lets one probe call through."""

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
