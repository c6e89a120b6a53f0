"""Logins: started by a password login (or `agenthub token`), kept alive by refresh-token
rotation with reuse detection, ended by logout, reuse, a password change, the user, an
administrator or the account's deletion. Ending a login ends its access tokens at once: every
authenticated request checks its login (`web.credentials`), and open connections are told
through `credentials_revoked`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import NoReturn

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.auth.audit import ClientInfo, audit
from agenthub.core.errors import NotFound, Unauthorized
from agenthub.core.events import credentials_revoked
from agenthub.core.security import new_opaque_token, token_digest
from agenthub.db.base import utcnow
from agenthub.db.models.auth import Login, RefreshToken, User

_INVALID_REFRESH = "The refresh token is invalid or expired."


def _note_client(login: Login, client: ClientInfo) -> None:
    login.ip = client.ip
    login.user_agent = (client.user_agent or "")[:256] or None


async def start_login(
    db: AsyncSession, user_id: str, client: ClientInfo, *, lifetime: timedelta
) -> Login:
    """A new login of `user_id` from `client`, valid for `lifetime` unless refreshed."""
    now = utcnow()
    login = Login(user_id=user_id, created_at=now, last_used_at=now, expires_at=now + lifetime)
    _note_client(login, client)
    db.add(login)
    await db.flush()
    return login


async def issue_refresh_token(db: AsyncSession, login: Login, *, days: int) -> str:
    """A new opaque refresh token of `login`, stored hashed; the login lives as long as it."""
    token = new_opaque_token()
    login.expires_at = utcnow() + timedelta(days=days)
    db.add(
        RefreshToken(
            user_id=login.user_id,
            login_id=login.id,
            token_hash=token_digest(token),
            expires_at=login.expires_at,
        )
    )
    await db.flush()
    return token


async def _refresh_row(
    db: AsyncSession, token: str, *, lock: bool = False
) -> tuple[RefreshToken, Login] | None:
    stmt = (
        select(RefreshToken, Login)
        .join(Login, Login.id == RefreshToken.login_id)
        .where(RefreshToken.token_hash == token_digest(token))
    )
    row = (await db.execute(stmt.with_for_update(of=RefreshToken) if lock else stmt)).first()
    return None if row is None else (row[0], row[1])


async def login_of_refresh_token(db: AsyncSession, token: str) -> str | None:
    """The id of the login a refresh token belongs to, if it is known."""
    found = await _refresh_row(db, token)
    return None if found is None else found[1].id


async def rotate_refresh_token(
    db: AsyncSession, token: str, *, days: int, client: ClientInfo
) -> tuple[User, Login, str]:
    """Exchange a refresh token for the next one of its login.

    Presenting a token that was already rotated means it leaked: the login ends (its newest
    token and its access tokens too) and the reuse is audited.
    """
    found = await _refresh_row(db, token, lock=True)
    now = utcnow()
    if found is None or found[1].revoked_at is not None or found[0].expires_at <= now:
        raise Unauthorized(_INVALID_REFRESH)
    row, login = found
    if row.rotated_at is not None:
        await _refresh_reused(db, login, client)
    user = await db.get(User, row.user_id)
    if user is None or user.deleted_at is not None:
        raise Unauthorized(_INVALID_REFRESH)
    # Compare-and-set, so that of concurrent requests presenting one token exactly one rotates
    # it and the others count as reuse (SQLite ignores FOR UPDATE).
    claimed = await db.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.rotated_at.is_(None))
        .values(rotated_at=now)
        .execution_options(synchronize_session=False)
    )
    if not getattr(claimed, "rowcount", 0):
        await _refresh_reused(db, login, client)
    login.last_used_at = now
    _note_client(login, client)
    return user, login, await issue_refresh_token(db, login, days=days)


async def _refresh_reused(db: AsyncSession, login: Login, client: ClientInfo) -> NoReturn:
    await end_login(db, login.id)
    audit(db, "auth.refresh_reuse", user_id=login.user_id, client=client, login_id=login.id)
    raise Unauthorized(
        "The refresh token was already used; this login has been revoked.", keep_writes=True
    )


async def end_login(db: AsyncSession, login_id: str) -> str | None:
    """End one login; the id of its user if it was active."""
    user_id = await db.scalar(
        update(Login)
        .where(Login.id == login_id, Login.revoked_at.is_(None))
        .values(revoked_at=utcnow())
        .returning(Login.user_id)
        .execution_options(synchronize_session=False)
    )
    if user_id is not None:
        credentials_revoked(db, user_id)
    return user_id


async def end_logins(db: AsyncSession, user_id: str, *, keep: str | None = None) -> int:
    """End every active login of `user_id` but `keep`; how many ended."""
    stmt = update(Login).where(Login.user_id == user_id, Login.revoked_at.is_(None))
    if keep is not None:
        stmt = stmt.where(Login.id != keep)
    result = await db.execute(
        stmt.values(revoked_at=utcnow()).execution_options(synchronize_session=False)
    )
    ended = int(getattr(result, "rowcount", 0) or 0)
    if ended:
        credentials_revoked(db, user_id)
    return ended


async def end_own_login(db: AsyncSession, user_id: str, login_id: str) -> None:
    """End one of the user's active logins; 404 for any other id."""
    owner = await db.scalar(
        select(Login.user_id).where(
            Login.id == login_id, Login.user_id == user_id, Login.revoked_at.is_(None)
        )
    )
    if owner is None:
        raise NotFound(f"Session {login_id!r} not found.")
    await end_login(db, login_id)


async def active_logins(db: AsyncSession, user_id: str) -> Sequence[Login]:
    """The user's logins that are neither ended nor expired, newest first."""
    return (
        await db.scalars(
            select(Login)
            .where(
                Login.user_id == user_id, Login.revoked_at.is_(None), Login.expires_at > utcnow()
            )
            .order_by(Login.id.desc())
        )
    ).all()
