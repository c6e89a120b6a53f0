"""Who is calling: `CurrentCredential`, `CurrentUser` and `AdminUser` from a JWT, an API key or
the access cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from agenthub.config import Settings
from agenthub.core.errors import Forbidden, Unauthorized
from agenthub.core.security import csrf_token, same
from agenthub.db.models.auth import User
from agenthub.db.session import DbSession
from agenthub.web import credentials
from agenthub.web.credentials import Credential
from agenthub.web.ratelimit import consume_user_limit

ACCESS_COOKIE = "access_token"
REFRESH_COOKIE = "refresh_token"
CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_bearer = HTTPBearer(auto_error=False, description="JWT access token or API key")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False)
_cookie = APIKeyCookie(name=ACCESS_COOKIE, auto_error=False)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
ApiKeyCredentials = Annotated[str | None, Depends(_api_key)]
CookieCredentials = Annotated[str | None, Depends(_cookie)]


# `async def` although they never await: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hop on every request that uses it.


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(get_settings)]

_INVALID = "The credentials are invalid, expired or revoked."


def check_csrf(request: Request, settings: Settings, login_id: str | None) -> None:
    """A cookie-authenticated unsafe request must send its login's CSRF token (the
    `csrf_token` cookie's value) in `X-CSRF-Token`."""
    if request.method in SAFE_METHODS:
        return
    header = request.headers.get(CSRF_HEADER)
    expected = csrf_token(settings.signing_key, login_id) if login_id is not None else None
    if not header or expected is None or not same(header, expected):
        raise Forbidden(
            f"Cookie authentication needs this login's CSRF token in the {CSRF_HEADER} header "
            "on this request."
        )


async def current_credential(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    bearer: BearerCredentials,
    api_key: ApiKeyCredentials,
    cookie: CookieCredentials,
) -> Credential:
    """The caller's valid credential; 401 otherwise (403 for a cookie request without CSRF)."""
    if bearer is not None:
        credential = await credentials.for_token(db, settings.signing_key, bearer.credentials)
    elif api_key is not None:
        credential = await credentials.for_api_key(db, api_key)
    elif cookie is not None:
        credential = await credentials.for_token(db, settings.signing_key, cookie)
        if credential is not None:
            check_csrf(request, settings, credential.login_id)
    else:
        raise Unauthorized(
            "Authentication required: a Bearer token, an X-API-Key or the access cookie.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if credential is None:
        raise Unauthorized(_INVALID, headers={"WWW-Authenticate": "Bearer"})
    return await identified(request, credential)


async def identified(request: Request, credential: Credential) -> Credential:
    """Note the caller for the request's log line and count the call against their rate limit
    (429 once it is spent)."""
    request.state.user_id = credential.user.id
    await consume_user_limit(request.scope, credential.user.id)
    return credential


CurrentCredential = Annotated[Credential, Depends(current_credential)]


async def current_user(credential: CurrentCredential) -> User:
    """The authenticated, active user."""
    return credential.user


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise Forbidden("This route is for administrators.")
    return user


AdminUser = Annotated[User, Depends(admin_user)]
