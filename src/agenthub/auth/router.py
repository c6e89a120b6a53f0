"""`/v1/auth`: register, login (tokens or cookies), refresh rotation, logout."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Cookie, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from agenthub.auth import logins, service
from agenthub.auth.audit import audit
from agenthub.auth.deps import Client, Hasher, Limits
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
from agenthub.core.security import (
    TokenError,
    csrf_token,
    decode_access_token,
    encode_access_token,
    looks_like_jwt,
)
from agenthub.db.models.auth import Login
from agenthub.db.session import DbSession
from agenthub.web.caller import (
    ACCESS_COOKIE,
    CSRF_COOKIE,
    REFRESH_COOKIE,
    AppSettings,
    BearerCredentials,
    CookieCredentials,
    check_csrf,
)
from agenthub.web.idempotency import IdempotencyDep

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
        audit(db, "auth.register", user_id=user.id, client=client)
        return UserOut.model_validate(user)

    result: UserOut = await idempotency.run(status.HTTP_201_CREATED, create)
    return result


def _start_session(
    response: Response,
    settings: Settings,
    login: Login,
    refresh_token: str,
    cookie: bool,
) -> TokenPair | CookieSession:
    access, ttl = encode_access_token(
        settings.signing_key, login.user_id, login.id, minutes=settings.access_token_minutes
    )
    if not cookie:
        return TokenPair(access_token=access, refresh_token=refresh_token, expires_in=ttl)
    csrf = csrf_token(settings.signing_key, login.id)
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
        audit(db, "auth.login_failed", user_id=user.id if user else None, client=client)
        raise Unauthorized("Incorrect email or password.", keep_writes=True)
    days = settings.refresh_token_days
    login = await logins.start_login(db, user.id, client, lifetime=timedelta(days=days))
    audit(db, "auth.login", user_id=user.id, client=client, cookie=body.cookie, login_id=login.id)
    refresh = await logins.issue_refresh_token(db, login, days=days)
    return _start_session(response, settings, login, refresh, body.cookie)


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
    """Rotate a refresh token; a reused one ends its login."""
    token = body.refresh_token if body is not None else None
    from_cookie = token is None and refresh_cookie is not None
    if token is None and refresh_cookie is not None:
        token = refresh_cookie
        check_csrf(request, settings, await logins.login_of_refresh_token(db, token))
    if token is None:
        raise Unauthorized("Send `refresh_token` in the body, or the refresh cookie.")
    _, login, new_token = await logins.rotate_refresh_token(
        db, token, days=settings.refresh_token_days, client=client
    )
    return _start_session(response, settings, login, new_token, from_cookie)


@router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(403, 422)
)
async def logout(
    request: Request,
    db: DbSession,
    settings: AppSettings,
    client: Client,
    bearer: BearerCredentials,
    cookie: CookieCredentials,
    refresh_cookie: RefreshCookie = None,
    body: RefreshRequest | None = None,
) -> Response:
    """End a login and clear the auth cookies: the login of the refresh token in the body,
    else of the refresh cookie, else of the Bearer access token, else of the access cookie.
    Its access tokens stop working at once. 204 also when there was nothing to end."""
    login_id = await _login_to_end(request, db, settings, bearer, cookie, refresh_cookie, body)
    if login_id is not None and (user_id := await logins.end_login(db, login_id)) is not None:
        audit(db, "auth.logout", user_id=user_id, client=client, login_id=login_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_auth_cookies(response)
    return response


async def _login_to_end(
    request: Request,
    db: AsyncSession,
    settings: Settings,
    bearer: BearerCredentials,
    cookie: CookieCredentials,
    refresh_cookie: str | None,
    body: RefreshRequest | None,
) -> str | None:
    if body is not None and body.refresh_token is not None:
        return await logins.login_of_refresh_token(db, body.refresh_token)
    if refresh_cookie is not None:
        login_id = await logins.login_of_refresh_token(db, refresh_cookie)
        check_csrf(request, settings, login_id)
        return login_id
    if bearer is not None:
        return _login_of_access_token(settings, bearer.credentials)
    if cookie is not None:
        login_id = _login_of_access_token(settings, cookie)
        check_csrf(request, settings, login_id)
        return login_id
    return None


def _login_of_access_token(settings: Settings, token: str) -> str | None:
    """The login id of a valid access token (None for an API key or an invalid token)."""
    if not looks_like_jwt(token):
        return None
    try:
        login_id: str = decode_access_token(settings.signing_key, token)["sid"]
    except TokenError:
        return None
    return login_id


def clear_auth_cookies(response: Response) -> None:
    response.delete_cookie(ACCESS_COOKIE)
    response.delete_cookie(REFRESH_COOKIE, path=REFRESH_COOKIE_PATH)
    response.delete_cookie(CSRF_COOKIE)
