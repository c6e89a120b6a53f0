"""What the sign-up, sign-in and account routes need besides the caller (`web.caller`): the
password hasher, the request's own rate limits and where the request came from."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agenthub.auth.audit import ClientInfo
from agenthub.core.security import PasswordHasher
from agenthub.web.ratelimit import RateLimiter, RequestLimits, request_limits

# `async def` although they never await: FastAPI runs a plain `def` dependency in its thread
# pool, a thread hop on every request that uses it.


async def get_hasher(request: Request) -> PasswordHasher:
    hasher: PasswordHasher = request.app.state.hasher
    return hasher


async def get_request_limits(request: Request) -> RequestLimits:
    """This request's rate limits, for routes that count their own (registration, login)."""
    limiter: RateLimiter = request.app.state.limiter
    return request_limits(request.scope, limiter)


async def client_info(request: Request) -> ClientInfo:
    return ClientInfo(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


Hasher = Annotated[PasswordHasher, Depends(get_hasher)]
Limits = Annotated[RequestLimits, Depends(get_request_limits)]
Client = Annotated[ClientInfo, Depends(client_info)]
