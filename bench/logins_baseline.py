"""Baseline of `bench/logins.py`: agenthub with the access-token check it had before logins,
the user looked up by id alone (no join with the token's login, so an ended login's tokens
would still pass). Run by uvicorn as a factory: `logins_baseline:create_app`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.app import create_app as create_agenthub
from agenthub.db.models.auth import User
from agenthub.web import credentials
from agenthub.web.credentials import Credential


async def user_only(db: AsyncSession, claims: dict[str, Any]) -> Credential | None:
    """The active user of the token's subject; its login is not looked at."""
    user = await db.scalar(select(User).where(User.id == claims["sub"], User.deleted_at.is_(None)))
    if user is None:
        return None
    expires_at = datetime.fromtimestamp(claims["exp"], UTC)
    return Credential(user, login_id=claims["sid"], expires_at=expires_at)


def create_app() -> FastAPI:
    credentials.for_access_token = user_only
    return create_agenthub()
