"""Password hashing (Argon2id), access tokens (JWT, HS256) and opaque secret tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import math
import os
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import argon2
import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from agenthub.config import Settings
from agenthub.core.errors import ServiceUnavailable

JWT_ALGORITHM = "HS256"
API_KEY_PREFIX = "ahk_"
API_KEY_DISPLAY_CHARS = 12


def hashing_threads() -> int:
    """Threads for password hashing by default: one core fewer than the machine has (at least
    one), so the event loop always keeps a core for every other request."""
    return max(1, (os.cpu_count() or 1) - 1)


class PasswordHasher:
    """Argon2id with configurable cost (tests lower it; production keeps the defaults).

    `hashed` and `matches` run off the event loop on at most `threads` threads, with at most
    `queue` more calls waiting for one: a burst of logins waits its turn or is refused with
    503 and `Retry-After`, and never takes the cores the other requests need.
    """

    def __init__(
        self,
        time_cost: int = 3,
        memory_kib: int = 65536,
        *,
        threads: int | None = None,
        queue: int = 16,
    ) -> None:
        self._hash = PasswordHash((Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib),))
        self._dummy = unmatchable_hash(time_cost, memory_kib)
        self._threads = threads or hashing_threads()
        self._limit = self._threads + queue
        self._pending = 0
        self._seconds = 0.1  # a moving average of one call's time, for Retry-After
        self._pool: ThreadPoolExecutor | None = None  # started by the first call

    async def hashed(self, password: str) -> str:
        """`hash` off the event loop."""
        result: str = await self._off_loop(self.hash, password)
        return result

    async def matches(self, password: str, hashed: str | None) -> bool:
        """`verify` off the event loop."""
        result: bool = await self._off_loop(self.verify, password, hashed)
        return result

    async def _off_loop(self, call: Callable[..., Any], *args: Any) -> Any:
        if self._pending >= self._limit:
            wait = self._seconds * self._pending / self._threads
            raise ServiceUnavailable(
                "Too many sign-ins at once: try again shortly.",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="agenthub-password")
        self._pending += 1
        started = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, call, *args)
        finally:
            self._pending -= 1
            self._seconds = 0.8 * self._seconds + 0.2 * (time.monotonic() - started)

    def close(self) -> None:
        """Wait for the calls in progress and stop the threads (a later call starts them
        again: an app can be started more than once)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def hash(self, password: str) -> str:
        return self._hash.hash(password)

    def verify(self, password: str, hashed: str | None) -> bool:
        """Constant work whether or not the account exists (`hashed` None verifies a dummy)."""
        if hashed is None:
            self._hash.verify(password, self._dummy)
            return False
        return self._hash.verify(password, hashed)


def password_hasher(settings: Settings) -> PasswordHasher:
    """The hasher and its threads as configured."""
    return PasswordHasher(
        settings.password_time_cost,
        settings.password_memory_kib,
        threads=settings.password_hash_threads,
        queue=settings.password_hash_queue,
    )


def unmatchable_hash(time_cost: int, memory_kib: int) -> str:
    """An encoded Argon2id hash with the hasher's parameters and a random digest: verifying a
    password against it costs what verifying a real hash costs, and making it costs nothing
    (hashing a dummy password would take a noticeable part of the start-up)."""
    salt, digest = (
        base64.b64encode(secrets.token_bytes(size)).rstrip(b"=").decode()
        for size in (argon2.DEFAULT_RANDOM_SALT_LENGTH, argon2.DEFAULT_HASH_LENGTH)
    )
    parameters = f"m={memory_kib},t={time_cost},p={argon2.DEFAULT_PARALLELISM}"
    return f"$argon2id$v={argon2.low_level.ARGON2_VERSION}${parameters}${salt}${digest}"


class TokenError(Exception):
    """An access token that is malformed, forged, expired or of the wrong kind."""


def encode_access_token(
    secret: str, user_id: str, login_id: str, *, minutes: float
) -> tuple[str, int]:
    """A signed JWT for `user_id` in login `login_id` (claim `sid`) and its lifetime in
    seconds."""
    now = datetime.now(UTC)
    lifetime = timedelta(minutes=minutes)
    claims: dict[str, Any] = {
        "sub": user_id,
        "sid": login_id,
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "jti": secrets.token_hex(8),
        "typ": "access",
    }
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), int(lifetime.total_seconds())


def decode_access_token(secret: str, token: str) -> dict[str, Any]:
    """The claims of a valid access token; raises TokenError otherwise (`alg: none` included,
    and a token without its login id). A token verified before is not verified again: only
    its expiry is checked (the signature and the other claims cannot have changed)."""
    claims = _verified(secret, token)
    if claims["exp"] <= time.time():  # as PyJWT compares, without leeway
        raise TokenError("Signature has expired")
    return dict(claims)


@lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> dict[str, Any]:
    """The verified claims of an access token (a refused token raises and is not kept)."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],
            options={"require": ["sub", "sid", "exp", "iat", "typ"]},
        )
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from exc
    if claims.get("typ") != "access" or not all(
        isinstance(claims.get(name), str) for name in ("sub", "sid")
    ):
        raise TokenError("not an access token")
    return claims


def csrf_token(secret: str, login_id: str) -> str:
    """The CSRF token of a cookie login: an HMAC of its id, so a token from another login (or
    made up) never matches."""
    digest = hmac.new(secret.encode(), b"csrf:" + login_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and not token.startswith(API_KEY_PREFIX)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def new_opaque_token() -> str:
    return secrets.token_urlsafe(48)


def token_digest(token: str) -> str:
    """The stored form of an API key or refresh token: high-entropy, so a plain SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
