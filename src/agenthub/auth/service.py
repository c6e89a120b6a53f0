"""Identity logic: accounts and passwords, API keys (logins are in `auth.logins`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.auth.logins import end_logins
from agenthub.auth.passwords import acceptable, login_forms, normalized
from agenthub.core.errors import Conflict
from agenthub.core.events import credentials_revoked
from agenthub.core.ownership import get_owned, owned_by
from agenthub.core.security import API_KEY_DISPLAY_CHARS, PasswordHasher, new_api_key, token_digest
from agenthub.db.base import utcnow
from agenthub.db.models.auth import ApiKey, User


async def create_user(
    db: AsyncSession,
    hasher: PasswordHasher,
    *,
    email: str,
    password: str,
    username: str | None = None,
    is_admin: bool = False,
) -> User:
    """A new account; 409 if the email is taken, 422 if the password is too weak."""
    email = email.strip().lower()
    password = acceptable(password, email)
    if await db.scalar(select(User.id).where(User.email == email)) is not None:
        raise Conflict("An account with this email already exists.")
    user = User(
        email=email,
        username=username,
        password_hash=await hasher.hashed(password),
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
    does not tell which emails are registered. The read's connection goes back to the pool
    first: logins waiting their turn at the hasher must not hold every connection while the
    other requests wait for one.
    """
    user = await active_user_by_email(db, email)
    await db.commit()  # nothing written yet: this only ends the read
    return user, await check_password(hasher, user, password)


async def check_password(hasher: PasswordHasher, user: User | None, password: str) -> bool:
    """Whether `password` is the user's (a dummy hash is checked for no user). A password
    stored before normalisation in a non-NFC form matches as typed, and is stored again in
    NFC (the caller's unit of work commits it)."""
    hashed = user.password_hash if user is not None else None
    for attempt, form in enumerate(login_forms(password)):
        if await hasher.matches(form, hashed):
            if attempt and user is not None:
                await set_password(hasher, user, normalized(password))
            return True
    return False


async def set_password(hasher: PasswordHasher, user: User, password: str) -> None:
    user.password_hash = await hasher.hashed(password)


async def change_password(
    db: AsyncSession, hasher: PasswordHasher, user: User, new_password: str, *, keep: str | None
) -> int:
    """Set a new password (422 if too weak) and end every login but `keep`; how many ended."""
    await set_password(hasher, user, acceptable(new_password, user.email, field="new_password"))
    return await end_logins(db, user.id, keep=keep)


async def active_user(db: AsyncSession, user_id: str) -> User | None:
    return await db.scalar(select(User).where(User.id == user_id, User.deleted_at.is_(None)))


async def active_user_by_email(db: AsyncSession, email: str) -> User | None:
    return await db.scalar(
        select(User).where(User.email == email.strip().lower(), User.deleted_at.is_(None))
    )


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
    credentials_revoked(db, user_id)


async def delete_all_api_keys(db: AsyncSession, user_id: str) -> int:
    result = await db.execute(delete(ApiKey).where(ApiKey.user_id == user_id))
    deleted = int(getattr(result, "rowcount", 0) or 0)
    if deleted:
        credentials_revoked(db, user_id)
    return deleted


async def soft_delete_user(db: AsyncSession, user: User) -> None:
    """Cut every credential at once; the row (and data) stay until the retention purge.

    The email is released so that the address can register again.
    """
    now = utcnow()
    user.deleted_at = now
    user.email = f"{user.id}@deleted.invalid"
    await delete_all_api_keys(db, user.id)
    await end_logins(db, user.id)
    credentials_revoked(db, user.id)  # also without keys or logins: API keys' connections


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
