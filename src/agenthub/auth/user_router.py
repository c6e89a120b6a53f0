"""`/v1/user` (profile, password, logins, API keys, own audit, account deletion) and
`/v1/admin` (audit, ending a user's logins)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status
from sqlalchemy import select

from agenthub.auth import logins, service
from agenthub.auth.audit import audit
from agenthub.auth.deps import Client, Hasher, Limits
from agenthub.auth.router import clear_auth_cookies
from agenthub.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    AuditEventOut,
    LoginClient,
    LoginOut,
    PasswordChange,
    Profile,
    ProfilePatch,
)
from agenthub.core.errors import Forbidden, NotFound, problem_responses
from agenthub.core.pagination import Page, PageParams, keyset_page, page_params
from agenthub.db.models.auth import AuditEvent, User
from agenthub.db.session import DbSession
from agenthub.web.caller import (
    AdminUser,
    AppSettings,
    CurrentCredential,
    CurrentUser,
)
from agenthub.web.idempotency import idempotent

router = APIRouter(prefix="/v1/user", tags=["user"], responses=problem_responses(401))
admin_router = APIRouter(prefix="/v1/admin", tags=["admin"], responses=problem_responses(401, 403))

Paging = Annotated[PageParams, Depends(page_params)]
KeyId = Annotated[str, Path(max_length=64)]
LoginId = Annotated[str, Path(max_length=64)]


async def _profile(db: DbSession, user: User) -> Profile:
    keys = await service.list_api_keys(db, user.id)
    return Profile.of(user, [k.prefix for k in keys])


@router.get("/profile", response_model=Profile)
async def get_profile(user: CurrentUser, db: DbSession) -> Profile:
    return await _profile(db, user)


@router.patch("/profile", response_model=Profile, responses=problem_responses(422))
async def patch_profile(body: ProfilePatch, user: CurrentUser, db: DbSession) -> Profile:
    """Change the username and/or replace the preferences object."""
    if "username" in body.model_fields_set:
        user.username = body.username
    if body.preferences is not None:
        user.preferences = body.preferences
    await db.flush()
    return await _profile(db, user)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
async def delete_account(user: CurrentUser, db: DbSession, client: Client) -> Response:
    """Delete the account: every token and key stops working at once; data is purged later."""
    await service.soft_delete_user(db, user)
    audit(db, "account.deleted", user_id=user.id, client=client)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    clear_auth_cookies(response)
    return response


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(403, 422, 429),
)
async def change_password(
    body: PasswordChange,
    credential: CurrentCredential,
    db: DbSession,
    hasher: Hasher,
    limits: Limits,
    settings: AppSettings,
    client: Client,
) -> None:
    """Change the password (403 if `current_password` is wrong; failures count against the
    account's login limit). Every other login ends; the one making the request stays."""
    user = credential.user
    await limits.check(settings.login_limit_account, "login-account", user.email)
    if not await service.check_password(hasher, user, body.current_password):
        await limits.hit(settings.login_limit_account, "login-account", user.email)
        audit(db, "auth.password_change_failed", user_id=user.id, client=client)
        raise Forbidden("The current password is incorrect.", keep_writes=True)
    ended = await service.change_password(
        db, hasher, user, body.new_password, keep=credential.login_id
    )
    audit(db, "auth.password_changed", user_id=user.id, client=client, logins_ended=ended)


@router.get("/sessions", response_model=Page[LoginOut])
async def list_sessions(credential: CurrentCredential, db: DbSession) -> Page[LoginOut]:
    """The account's active logins, newest first; `current` marks the caller's."""
    rows = await logins.active_logins(db, credential.user.id)
    return Page(
        data=[
            LoginOut(
                id=login.id,
                created_at=login.created_at,
                last_used_at=login.last_used_at,
                expires_at=login.expires_at,
                client=LoginClient(ip=login.ip, user_agent=login.user_agent),
                current=login.id == credential.login_id,
            )
            for login in rows
        ],
        has_more=False,
        next_cursor=None,
    )


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404),
)
async def end_session(
    session_id: LoginId, user: CurrentUser, db: DbSession, client: Client
) -> None:
    """End one of the account's logins: its refresh and access tokens stop working at once and
    its realtime connections close (4401)."""
    await logins.end_own_login(db, user.id, session_id)
    audit(db, "auth.session_ended", user_id=user.id, client=client, login_id=session_id)


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=problem_responses(409, 422),
)
@idempotent(status.HTTP_201_CREATED)
async def create_api_key(
    body: ApiKeyCreate,
    user: CurrentUser,
    db: DbSession,
    client: Client,
) -> ApiKeyCreated:
    """Create an API key; the secret `key` is in this response only."""

    key, secret = await service.create_api_key(
        db, user, name=body.name, expires_in_days=body.expires_in_days
    )
    audit(db, "api_key.created", user_id=user.id, client=client, key_id=key.id)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)


@router.get("/api-keys", response_model=Page[ApiKeyOut])
async def list_api_keys(user: CurrentUser, db: DbSession) -> Page[ApiKeyOut]:
    keys = await service.list_api_keys(db, user.id)
    return Page(data=[ApiKeyOut.model_validate(k) for k in keys], has_more=False, next_cursor=None)


@router.delete(
    "/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404),
)
async def delete_api_key(key_id: KeyId, user: CurrentUser, db: DbSession, client: Client) -> None:
    await service.delete_api_key(db, user.id, key_id)
    audit(db, "api_key.revoked", user_id=user.id, client=client, key_id=key_id)


@router.post(
    "/api-key/reset",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=problem_responses(409, 422),
)
@idempotent(status.HTTP_201_CREATED)
async def reset_api_keys(user: CurrentUser, db: DbSession, client: Client) -> ApiKeyCreated:
    """Revoke every API key of the account and issue one new key."""

    revoked = await service.delete_all_api_keys(db, user.id)
    key, secret = await service.create_api_key(db, user, name="default", expires_in_days=None)
    audit(db, "api_key.reset", user_id=user.id, client=client, revoked=revoked, key_id=key.id)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=secret)


async def _audit_page(
    db: DbSession, paging: PageParams, user_id: str | None, action: str | None
) -> Page[AuditEventOut]:
    stmt = select(AuditEvent)
    if user_id is not None:
        stmt = stmt.where(AuditEvent.user_id == user_id)
    if action is not None:
        stmt = stmt.where(AuditEvent.action == action)
    rows, has_more, cursor = await keyset_page(db, stmt, AuditEvent.id, paging, "aud")
    return Page(
        data=[AuditEventOut.model_validate(r) for r in rows], has_more=has_more, next_cursor=cursor
    )


ActionFilter = Annotated[str | None, Query(max_length=64, description="e.g. auth.login")]


@router.get("/audit", response_model=Page[AuditEventOut], responses=problem_responses(422))
async def own_audit(
    user: CurrentUser, db: DbSession, paging: Paging, action: ActionFilter = None
) -> Page[AuditEventOut]:
    """Security events of the caller's account, newest first."""
    return await _audit_page(db, paging, user.id, action)


@admin_router.get("/audit", response_model=Page[AuditEventOut], responses=problem_responses(422))
async def admin_audit(
    admin: AdminUser,
    db: DbSession,
    paging: Paging,
    action: ActionFilter = None,
    user_id: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AuditEventOut]:
    """Security events of every account, newest first."""
    return await _audit_page(db, paging, user_id, action)


@admin_router.delete(
    "/users/{user_id}/sessions",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(404),
)
async def admin_end_sessions(
    user_id: Annotated[str, Path(max_length=64)], admin: AdminUser, db: DbSession, client: Client
) -> None:
    """End every login of a user: their access and refresh tokens stop working at once and
    their realtime connections close (4401). API keys are kept."""
    if await service.active_user(db, user_id) is None:
        raise NotFound(f"User {user_id!r} not found.")
    ended = await logins.end_logins(db, user_id)
    audit(
        db, "admin.sessions_ended", user_id=user_id, actor_id=admin.id, client=client, ended=ended
    )
