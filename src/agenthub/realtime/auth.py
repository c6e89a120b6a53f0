"""Who opens a realtime connection: `?token=` (JWT or API key), the `Authorization` or
`X-API-Key` header, or the access cookie — the cookie only from an allowed `Origin`, since a
browser sends it from any page."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request
from starlette.requests import HTTPConnection

from agenthub.auth.deps import (
    ACCESS_COOKIE,
    ApiKeyCredentials,
    AppSettings,
    BearerCredentials,
    CookieCredentials,
    current_user,
    identified,
    user_from_token,
)
from agenthub.auth.models import User
from agenthub.config import Settings
from agenthub.core.errors import Unauthorized
from agenthub.db.engine import Database
from agenthub.db.session import DbSession
from agenthub.realtime.channels import Principal


def origin_allowed(connection: HTTPConnection, settings: Settings) -> bool:
    """The `Origin` is in the CORS allow-list or is this server itself (same origin)."""
    origin = connection.headers.get("origin")
    if origin is None:
        return False
    if origin in settings.cors_origins:
        return True
    return urlsplit(origin).netloc == connection.headers.get("host")


def _credential(connection: HTTPConnection, settings: Settings) -> str | None:
    token = connection.query_params.get("token")
    if token:
        return token
    scheme, _, value = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if api_key := connection.headers.get("x-api-key"):
        return api_key
    cookie = connection.cookies.get(ACCESS_COOKIE)
    if cookie and origin_allowed(connection, settings):
        return cookie
    return None


async def authenticate(
    connection: HTTPConnection, settings: Settings, database: Database
) -> Principal | None:
    """The caller of a WebSocket handshake, or None when no valid credential came with it."""
    credential = _credential(connection, settings)
    if credential is None:
        return None
    async with database.transaction() as db:
        user = await user_from_token(db, settings, credential)
        return None if user is None else Principal(user.id, user.is_admin)


async def stream_user(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    bearer: BearerCredentials,
    api_key: ApiKeyCredentials,
    cookie: CookieCredentials,
    token: Annotated[
        str | None,
        Query(max_length=4096, description="JWT or API key, for clients that cannot set headers"),
    ] = None,
) -> User:
    """`CurrentUser` that also accepts `?token=` (browsers' `EventSource` sets no headers)."""
    if token is None:
        return await current_user(request, db, settings, bearer, api_key, cookie)
    user = await user_from_token(db, settings, token)
    if user is None:
        raise Unauthorized("The credentials are invalid, expired or revoked.")
    return await identified(request, user)


StreamUser = Annotated[User, Depends(stream_user)]
