"""`/v1/auth`: register, login (tokens or cookies), refresh rotation, logout."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Cookie, Request, Response, status

from agenthub.auth import service
from agenthub.auth.deps import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    REFRESH_COOKIE,
    AppSettings,
    Client,
    Hasher,
    Limits,
    check_csrf,
)
from agenthub.auth.models import User
from agenthub.auth.schemas import (
    CookieSession,
    LoginRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    UserOut,
)
from agenthub.config import Settings
from agenthub.core.errors import Unauthorized, problem_responses
from agenthub.core.idempotency import IdempotencyDep
from agenthub.core.security import encode_access_token
from agenthub.db.session import DbSession

router = APIRouter(prefix="/v1/auth", tags=["auth"])

REFRESH_COOKIE_PATH = "/v1/auth"
RefreshCookie = Annotated[str | None, Cookie(alias=REFRESH_COOKIE, include_in_schema=False)]


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=problem_responses(409, 422, 429),
)
async def register(
    body: RegisterRequest,
    request: Request,
    db: DbSession,
    hasher: Hasher,
    limits: Limits,
    settings: AppSettings,
    client: Client,
    idempotency: IdempotencyDep,
) -> UserOut:
    """Create an account."""
    await limits.consume(settings.login_limit_ip, "register-ip", client.ip or "unknown")

    async def create() -> UserOut:
        user = await service.create_user(
            db, hasher, email=body.email, password=body.password, username=body.username
        )
        service.audit(db, "auth.register", user_id=user.id, client=client)
        return UserOut.model_validate(user)

    result: UserOut = await idempotency.run(status.HTTP_201_CREATED, create)
    return result


def _start_session(
    response: Response, settings: Settings, user: User, refresh_token: str, cookie: bool
) -> TokenPair | CookieSession:
    access, ttl = encode_access_token(
        settings.signing_key, user.id, minutes=settings.access_token_minutes
    )
    if not cookie:
        return TokenPair(access_token=access, refresh_token=refresh_token, expires_in=ttl)
    csrf = secrets.token_urlsafe(24)
    secure = settings.cookie_secure
    response.set_cookie(
        ACCESS_COOKIE, access, max_age=ttl, httponly=True, secure=secure, samesite="lax"
    )
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=settings.refresh_token_days * 86400,
        path=REFRESH_COOKIE_PATH,
        httponly=True,
        secure=secure,
        samesite="lax",
    )
    response.set_cookie(
        CSRF_COOKIE,
        csrf,
        max_age=settings.refresh_token_days * 86400,
        httponly=False,
        secure=secure,
        samesite="lax",
    )
    return CookieSession(expires_in=ttl, csrf_token=csrf)


@router.post(
    "/login",
    response_model=TokenPair | CookieSession,
    responses=problem_responses(401, 422, 429),
)
async def login(
    body: LoginRequest,
    response: Response,
    db: DbSession,
    hasher: Hasher,
    limits: Limits,
    settings: AppSettings,
    client: Client,
) -> TokenPair | CookieSession:
    """Exchange email and password for tokens, or for httpOnly cookies with `cookie: true`."""
    email = body.email.lower()
    await limits.consume(settings.login_limit_ip, "login-ip", client.ip or "unknown")
    await limits.check(settings.login_limit_account, "login-account", email)
    user, ok = await service.authenticate(db, hasher, email, body.password)
    if user is None or not ok:
        await limits.hit(settings.login_limit_account, "login-account", email)
        service.audit(db, "auth.login_failed", user_id=user.id if user else None, client=client)
        raise Unauthorized("Incorrect email or password.", keep_writes=True)
    service.audit(db, "auth.login", user_id=user.id, client=client, cookie=body.cookie)
    refresh = await service.issue_refresh_token(db, user.id, days=settings.refresh_token_days)
    return _start_session(response, settings, user, refresh, body.cookie)


@router.post(
    "/refresh",
    response_model=TokenPair | CookieSession,
    responses=problem_responses(401, 403, 422),
)
async def refresh(
    request: Request,
    response: Response,
    db: DbSession,
    settings: AppSettings,
    client: Client,
    refresh_cookie: RefreshCookie = None,
    body: RefreshRequest | None = None,
) -> TokenPair | CookieSession:
    """Rotate a refresh token; a reused one revokes every token of its login."""
    token = body.refresh_token if body is not None else None
    from_cookie = token is None and refresh_cookie is not None
    if from_cookie:
        check_csrf(request)
        token = refresh_cookie
    if token is None:
        raise Unauthorized("Send `refresh_token` in the body, or the refresh cookie.")
    user, new_token = await service.rotate_refresh_token(
        db, token, days=settings.refresh_token_days, client=client
    )
    return _start_session(response, settings, user, new_token, from_cookie)


@router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(403, 422)
)
async def logout(
    request: Request,
    db: DbSession,
    client: Client,
    refresh_cookie: RefreshCookie = None,
    body: RefreshRequest | None = None,
) -> Response:
    """Revoke the refresh token (and its family) and clear the auth cookies."""
    token = body.refresh_token if body is not None else None
    if token is None and refresh_cookie is not None:
        check_csrf(request)
        token = refresh_cookie
    if token is not None:
        user_id = await service.revoke_refresh_token(db, token)
        if user_id is not None:
            service.audit(db, "auth.logout", user_id=user_id, client=client)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_auth_cookies(response)
    return response


def clear_auth_cookies(response: Response) -> None:
    response.delete_cookie(ACCESS_COOKIE)
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_COOKIE_PATH)
    response.delete_cookie(CSRF_COOKIE)
