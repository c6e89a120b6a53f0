"""Request and response bodies of identity routes."""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from agenthub.core.jsondata import JsonObject

USERNAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: str = Field(min_length=8, max_length=256)
    username: str | None = Field(default=None, pattern=USERNAME_PATTERN)


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: str = Field(min_length=1, max_length=256)
    cookie: bool = Field(default=False, description="Set httpOnly cookies instead of tokens")


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(
        default=None, min_length=1, max_length=512, description="Omit in cookie mode"
    )


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=8, max_length=256)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int


class CookieSession(BaseModel):
    """Login in cookie mode: the tokens are in httpOnly cookies; send `csrf_token` back as
    the `X-CSRF-Token` header on unsafe requests."""

    token_type: Literal["cookie"] = "cookie"  # noqa: S105
    expires_in: int
    csrf_token: str


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    email: str
    username: str | None
    is_admin: bool
    created_at: datetime


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Profile(UserOut):
    preferences: dict[str, Any]
    api_key_prefixes: list[str]
    usage: Usage

    @classmethod
    def of(cls, user: Any, api_key_prefixes: list[str]) -> Profile:
        """The profile of a user: an ORM object, or a row by column (`db.unit`)."""
        get = user.__getitem__ if isinstance(user, dict) else partial(getattr, user)
        prompt, completion = get("prompt_tokens"), get("completion_tokens")
        return cls(
            id=get("id"),
            email=get("email"),
            username=get("username"),
            is_admin=get("is_admin"),
            created_at=get("created_at"),
            preferences=get("preferences"),
            api_key_prefixes=api_key_prefixes,
            usage=Usage(
                prompt_tokens=prompt,
                completion_tokens=completion,
                total_tokens=prompt + completion,
            ),
        )


class ProfilePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str | None = Field(default=None, pattern=USERNAME_PATTERN)
    preferences: JsonObject | None = None


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="default", min_length=1, max_length=100)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret; shown only in this response")


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    user_id: str | None
    actor_id: str | None
    action: str
    ip: str | None
    user_agent: str | None
    details: dict[str, Any]
    created_at: datetime


class LoginClient(BaseModel):
    """Where the login was made or last refreshed from."""

    ip: str | None
    user_agent: str | None


class LoginOut(BaseModel):
    """One active login (a signed-in device or program)."""

    id: str
    created_at: datetime
    last_used_at: datetime = Field(description="When it logged in or last refreshed its token")
    expires_at: datetime = Field(description="When it ends unless refreshed")
    client: LoginClient
    current: bool = Field(description="Whether this is the login making the request")
