"""Who opens a realtime connection: `?token=` (JWT or API key), the `Authorization` or
`X-API-Key` header, or the access cookie — the cookie only from an allowed `Origin`, since a
browser sends it from any page. And whether open connections' credentials are still good."""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Query, Request
from starlette.requests import HTTPConnection

from agenthub.config import Settings
from agenthub.core.errors import Unauthorized
from agenthub.db.base import utcnow
from agenthub.db.engine import Database
from agenthub.db.session import DbSession
from agenthub.realtime.channels import Principal
from agenthub.web import credentials
from agenthub.web.caller import (
    ACCESS_COOKIE,
    ApiKeyCredentials,
    AppSettings,
    BearerCredentials,
    CookieCredentials,
    current_credential,
    identified,
)
from agenthub.web.credentials import Credential


def origin_allowed(connection: HTTPConnection, settings: Settings) -> bool:
    """The `Origin` is in the CORS allow-list or is this server itself (same origin)."""
    origin = connection.headers.get("origin")
    if origin is None:
        return False
    if origin in settings.cors_origins:
        return True
    return urlsplit(origin).netloc == connection.headers.get("host")


def _token(connection: HTTPConnection, settings: Settings) -> str | None:
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


def principal_of(credential: Credential) -> Principal:
    user = credential.user
    return Principal(
        user.id, user.is_admin, credential.login_id, credential.api_key_id, credential.expires_at
    )


def expires_in(principal: Principal) -> int | None:
    """Seconds until the connection's credential expires (None: it does not by itself)."""
    if principal.expires_at is None:
        return None
    return max(0, int((principal.expires_at - utcnow()).total_seconds()))


async def authenticate(
    connection: HTTPConnection, settings: Settings, database: Database
) -> Principal | None:
    """The caller of a WebSocket handshake, or None when no valid credential came with it."""
    token = _token(connection, settings)
    return None if token is None else await principal_for(token, settings, database)


async def principal_for(token: str, settings: Settings, database: Database) -> Principal | None:
    """Who holds `token` (an access token or API key), if it is valid now."""
    async with database.transaction() as db:
        credential = await credentials.for_token(db, settings.signing_key, token)
        return None if credential is None else principal_of(credential)


async def still_active(database: Database, principals: Collection[Principal]) -> set[str]:
    """The logins and API keys among these connections' that are still active."""
    logins = {p.login_id for p in principals if p.login_id is not None}
    keys = {p.api_key_id for p in principals if p.api_key_id is not None}
    async with database.transaction() as db:
        return await credentials.still_active(db, logins, keys)


async def stream_credential(
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
) -> Credential:
    """`CurrentCredential` that also accepts `?token=` (browsers' `EventSource` sets no
    headers)."""
    if token is None:
        return await current_credential(request, db, settings, bearer, api_key, cookie)
    credential = await credentials.for_token(db, settings.signing_key, token)
    if credential is None:
        raise Unauthorized("The credentials are invalid, expired or revoked.")
    return await identified(request, credential)


StreamCredential = Annotated[Credential, Depends(stream_credential)]
