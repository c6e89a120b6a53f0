"""What a presented token is worth: the lookups behind every authenticated request and
realtime connection. An access token counts only while its login is active and its user not
deleted, checked in the one user query the request makes anyway."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.core.security import TokenError, decode_access_token, looks_like_jwt, token_digest
from agenthub.db.base import utcnow
from agenthub.db.models.auth import ApiKey, Login, User

API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class Credential:
    """An accepted token: whose it is, the login (access token) or API key it stands for,
    and when it stops working (None: not by itself)."""

    user: User
    login_id: str | None = None
    api_key_id: str | None = None
    expires_at: datetime | None = None


ACTIVE_LOGIN = (
    User.id == bindparam("user_id"),
    User.deleted_at.is_(None),
    Login.id == bindparam("login_id"),
    Login.user_id == User.id,
    Login.revoked_at.is_(None),
)
"""Where an access token counts: its login not revoked, its user not deleted. Bind `user_id`
and `login_id` with `login_params`; a statement may select more beside (one query for the
check and the request's own row)."""

# Built once: every authenticated request runs it, and building a statement costs more
# than running it (SQLAlchemy also keys its compiled-statement cache on the built object).
_ACTIVE_LOGIN_USER = select(User).where(*ACTIVE_LOGIN)
ACTIVE_USER_ROW = select(cast(Table, User.__table__)).where(*ACTIVE_LOGIN)
"""The user of an active login as a row (a `db.unit`'s login check); bind `login_params`."""


def login_params(claims: dict[str, Any]) -> dict[str, str]:
    """The binds of `ACTIVE_LOGIN` for a decoded access token."""
    return {"user_id": claims["sub"], "login_id": claims["sid"]}


async def for_access_token(db: AsyncSession, claims: dict[str, Any]) -> Credential | None:
    """The active user of a decoded access token whose login is still active."""
    user = await db.scalar(_ACTIVE_LOGIN_USER, login_params(claims))
    if user is None:
        return None
    expires_at = datetime.fromtimestamp(claims["exp"], UTC)
    return Credential(user, login_id=claims["sid"], expires_at=expires_at)


async def for_api_key(db: AsyncSession, key: str) -> Credential | None:
    """The active owner of an unexpired API key; marks the key used (at most once a minute)."""
    row = (
        await db.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == token_digest(key), User.deleted_at.is_(None))
        )
    ).first()
    if row is None:
        return None
    api_key, user = row
    now = utcnow()
    if api_key.expires_at is not None and api_key.expires_at <= now:
        return None
    if api_key.last_used_at is None or api_key.last_used_at < now - API_KEY_TOUCH_INTERVAL:
        api_key.last_used_at = now
    return Credential(user, api_key_id=api_key.id, expires_at=api_key.expires_at)


async def for_token(db: AsyncSession, secret: str, token: str) -> Credential | None:
    """An access token (JWT) or an API key, if it is valid now."""
    if not looks_like_jwt(token):
        return await for_api_key(db, token)
    try:
        claims = decode_access_token(secret, token)
    except TokenError:
        return None
    return await for_access_token(db, claims)


async def still_active(
    db: AsyncSession, login_ids: Collection[str], api_key_ids: Collection[str]
) -> set[str]:
    """Which of these logins and API keys still exist, unrevoked, for an undeleted user."""
    active: set[str] = set()
    if login_ids:
        active.update(
            await db.scalars(
                select(Login.id)
                .join(User, User.id == Login.user_id)
                .where(
                    Login.id.in_(login_ids), Login.revoked_at.is_(None), User.deleted_at.is_(None)
                )
            )
        )
    if api_key_ids:
        active.update(
            await db.scalars(
                select(ApiKey.id)
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.id.in_(api_key_ids), User.deleted_at.is_(None))
            )
        )
    return active
