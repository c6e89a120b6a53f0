"""Identity logic: accounts, login, refresh rotation with reuse detection, API keys, audit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.auth.models import ApiKey, AuditEvent, RefreshToken, User
from agenthub.core.errors import Conflict, Unauthorized
from agenthub.core.ids import new_id
from agenthub.core.ownership import get_owned, owned_by
from agenthub.core.security import (
    API_KEY_DISPLAY_CHARS,
    PasswordHasher,
    new_api_key,
    new_opaque_token,
    token_digest,
)
from agenthub.db.base import utcnow

API_KEY_TOUCH_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class ClientInfo:
    """Where a request came from, for the audit log."""

    ip: str | None = None
    user_agent: str | None = None


def audit(
    db: AsyncSession,
    action: str,
    *,
    user_id: str | None,
    client: ClientInfo,
    actor_id: str | None = None,
    **details: Any,
) -> None:
    """Record a security event in the caller's transaction."""
    db.add(
        AuditEvent(
            user_id=user_id,
            actor_id=actor_id if actor_id is not None else user_id,
            action=action,
            ip=client.ip,
            user_agent=(client.user_agent or "")[:256] or None,
            details=details,
        )
    )


async def create_user(
    db: AsyncSession,
    hasher: PasswordHasher,
    *,
    email: str,
    password: str,
    username: str | None = None,
    is_admin: bool = False,
) -> User:
    """A new account; 409 if the email is taken."""
    email = email.strip().lower()
    if await db.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("An account with this email already exists.")
    user = User(
        email=email,
        username=username,
        password_hash=await asyncio.to_thread(hasher.hash, password),
        is_admin=is_admin,
        preferences={},
    )
    db.add(user)
    try:
        await db.flush()
    except IntegrityError as exc:
        raise Conflict("An account with this email already exists.") from exc
    return user


async def authenticate(
    db: AsyncSession, hasher: PasswordHasher, email: str, password: str
) -> tuple[User | None, bool]:
    """The active user with this email and whether the password matches.

    The hash is checked (off the event loop) whether or not the account exists, so timing
    does not tell which emails are registered.
    """
    user = await active_user_by_email(db, email)
    ok = await asyncio.to_thread(hasher.verify, password, user.password_hash if user else None)
    return user, ok


async def issue_refresh_token(
    db: AsyncSession, user_id: str, *, days: int, family_id: str | None = None
) -> str:
    """A new opaque refresh token, stored hashed, in a new or existing family."""
    token = new_opaque_token()
    db.add(
        RefreshToken(
            user_id=user_id,
            family_id=family_id or new_id("rtk"),
            token_hash=token_digest(token),
            expires_at=utcnow() + timedelta(days=days),
        )
    )
    await db.flush()
    return token


async def rotate_refresh_token(
    db: AsyncSession, token: str, *, days: int, client: ClientInfo
) -> tuple[User, str]:
    """Exchange a refresh token for a new one of the same family.

    Presenting a token that was already rotated means it leaked: the whole family is revoked
    (the newest token included) and the reuse is audited.
    """
    row = await db.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_digest(token)).with_for_update()
    )
    now = utcnow()
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise Unauthorized("The refresh token is invalid or expired.")
    if row.rotated_at is not None:
        await _refresh_reused(db, row, now, client)
    user = await db.get(User, row.user_id)
    if user is None or user.deleted_at is not None:
        raise Unauthorized("The refresh token is invalid or expired.")
    # Compare-and-set, so that of concurrent requests presenting one token exactly one rotates
    # it and the others count as reuse (SQLite ignores FOR UPDATE).
    claimed = await db.execute(
        update(RefreshToken)
        .where(
            RefreshToken.id == row.id,
            RefreshToken.rotated_at.is_(None),
            RefreshToken.revoked_at.is_(None),
        )
        .values(rotated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(claimed, "rowcount", 0):
        await _refresh_reused(db, row, now, client)
    new_token = await issue_refresh_token(db, user.id, days=days, family_id=row.family_id)
    return user, new_token


async def _refresh_reused(
    db: AsyncSession, row: RefreshToken, now: datetime, client: ClientInfo
) -> NoReturn:
    await revoke_family(db, row.family_id, now)
    audit(db, "auth.refresh_reuse", user_id=row.user_id, client=client, family=row.family_id)
    raise Unauthorized(
        "The refresh token was already used; this login has been revoked.", keep_writes=True
    )


async def revoke_family(db: AsyncSession, family_id: str, now: datetime | None = None) -> None:
    await db.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )


async def revoke_refresh_token(db: AsyncSession, token: str) -> str | None:
    """Revoke the family of this token (logout); returns its user id if it was known."""
    row = await db.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == token_digest(token))
    )
    if row is None:
        return None
    await revoke_family(db, row.family_id)
    return row.user_id


async def user_for_api_key(db: AsyncSession, key: str) -> User | None:
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
    return user


async def active_user_by_email(db: AsyncSession, email: str) -> User | None:
    return await db.scalar(
        select(User).where(User.email == email.strip().lower(), User.deleted_at.is_(None))
    )


async def active_user(db: AsyncSession, user_id: str) -> User | None:
    return await db.scalar(select(User).where(User.id == user_id, User.deleted_at.is_(None)))


async def create_api_key(
    db: AsyncSession, user: User, *, name: str, expires_in_days: int | None
) -> tuple[ApiKey, str]:
    secret = new_api_key()
    key = ApiKey(
        user_id=user.id,
        name=name,
        prefix=secret[:API_KEY_DISPLAY_CHARS],
        key_hash=token_digest(secret),
        expires_at=utcnow() + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    db.add(key)
    await db.flush()
    return key, secret


async def list_api_keys(db: AsyncSession, user_id: str) -> list[ApiKey]:
    return list(await db.scalars(owned_by(ApiKey, user_id).order_by(ApiKey.id.desc())))


async def delete_api_key(db: AsyncSession, user_id: str, key_id: str) -> None:
    await db.delete(await get_owned(db, ApiKey, key_id, user_id, what="API key"))


async def delete_all_api_keys(db: AsyncSession, user_id: str) -> int:
    result = await db.execute(delete(ApiKey).where(ApiKey.user_id == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


async def soft_delete_user(db: AsyncSession, user: User) -> None:
    """Cut every credential at once; the row (and data) stay until the retention purge.

    The email is released so that the address can register again.
    """
    now = utcnow()
    user.deleted_at = now
    user.email = f"{user.id}@deleted.invalid"
    await delete_all_api_keys(db, user.id)
    await db.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def purge_deleted_users(db: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Hard-delete up to `limit` accounts deleted before `cutoff` and everything they own (the
    foreign keys cascade; their files' content is then unreferenced, which the orphan sweep
    removes); how many accounts. The audit log keeps their entries."""
    expired = select(User.id).where(User.deleted_at < cutoff).limit(limit).scalar_subquery()
    result = await db.execute(delete(User).where(User.id.in_(expired)))
    return int(result.rowcount)  # type: ignore[attr-defined]


async def count_admins(db: AsyncSession) -> int:
    return int(
        await db.scalar(
            select(func.count()).select_from(User).where(User.is_admin, User.deleted_at.is_(None))
        )
        or 0
    )


async def add_usage(db: AsyncSession, user_id: str, prompt: int, completion: int) -> None:
    """Add a run's tokens to the user's totals (one `SET x = x + n`: no lost update)."""
    await db.execute(
        update(User)
        .where(User.id == user_id)
        .values(
            prompt_tokens=User.prompt_tokens + prompt,
            completion_tokens=User.completion_tokens + completion,
        )
        .execution_options(synchronize_session=False)
    )
