"""Baseline for `bench/profile.py`: `GET /v1/user/profile` as a bare Starlette app.

No FastAPI, no middleware, no dependency injection, no ORM, no pydantic: one route that checks
the bearer JWT with PyJWT (same secret, algorithm and required claims as agenthub) and runs the
same two queries (the user joined with the token's login, which must be active; the key
prefixes) with SQLAlchemy Core on an engine built exactly like agenthub's (same pool,
same SQLite pragmas), then returns the same JSON. Run by uvicorn as a factory:
`python -m uvicorn --app-dir bench profile_baseline:create_app --factory`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from agenthub.config import Settings
from agenthub.db.engine import create_engine
from common import access_token_ids

USER_QUERY = text(
    "SELECT users.id, email, username, is_admin, users.created_at, preferences, prompt_tokens, "
    "completion_tokens FROM users JOIN logins ON logins.user_id = users.id "
    "WHERE users.id = :id AND deleted_at IS NULL AND logins.id = :sid AND revoked_at IS NULL"
).columns(
    id=String,
    email=String,
    username=String,
    is_admin=Boolean,
    created_at=DateTime(timezone=True),
    preferences=JSON,
    prompt_tokens=Integer,
    completion_tokens=Integer,
)
KEY_PREFIXES_QUERY = text(
    "SELECT prefix FROM api_keys WHERE user_id = :user_id ORDER BY id DESC"
).columns(prefix=String)


def _iso(value: datetime) -> str:
    """UTC ISO 8601 with a `Z`, as pydantic renders agenthub's aware datetimes."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _unauthorized() -> JSONResponse:
    return JSONResponse({"detail": "unauthorized"}, status_code=401)


def create_app() -> Starlette:
    """The baseline app, configured from the same `AGENTHUB_*` environment as agenthub."""
    settings = Settings()
    secret = settings.signing_key
    engine = create_engine(settings)

    async def profile(request: Request) -> JSONResponse:
        ids = access_token_ids(request.headers.get("authorization", ""), secret)
        if ids is None:
            return _unauthorized()
        user_id, login_id = ids
        async with engine.connect() as conn:
            user = (await conn.execute(USER_QUERY, {"id": user_id, "sid": login_id})).first()
            if user is None:
                return _unauthorized()
            prefixes = (await conn.execute(KEY_PREFIXES_QUERY, {"user_id": user_id})).scalars()
            body = {
                "id": user.id,
                "email": user.email,
                "username": user.username,
                "is_admin": user.is_admin,
                "created_at": _iso(user.created_at),
                "preferences": user.preferences,
                "api_key_prefixes": list(prefixes),
                "usage": {
                    "prompt_tokens": user.prompt_tokens,
                    "completion_tokens": user.completion_tokens,
                    "total_tokens": user.prompt_tokens + user.completion_tokens,
                },
            }
        return JSONResponse(body)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    return Starlette(routes=[Route("/v1/user/profile", profile)], lifespan=lifespan)
