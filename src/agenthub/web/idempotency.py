"""`Idempotency-Key` for creating POSTs: a repeat within 24 h replays the first response.

The record is written in the same transaction as what the request creates, so either both
exist or neither does; a concurrent duplicate hits the primary key and gets 409. The key is
bound to a hash of the request: a JSON body's bytes, or a streamed body's own digest (a file
upload, hashed while it is read, never held in memory).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Protocol

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from sqlalchemy import delete, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.responses import JSONResponse

from agenthub.core.errors import Conflict, FieldError, ValidationFailed
from agenthub.db.base import utcnow
from agenthub.db.models.idempotency import IdempotencyRecord
from agenthub.db.session import DbSession

TTL = timedelta(hours=24)
REPLAY_HEADER = "Idempotent-Replayed"


class StreamedBody(Protocol):
    async def digest(self) -> str:
        """A hash of the whole body, after reading whatever the handler left of it."""
        ...


class Idempotency:
    """Runs a creating handler at most once per (caller, key, body)."""

    def __init__(self, db: AsyncSession, request: Request, key: str | None) -> None:
        self.db = db
        self.request = request
        self.key = key

    def _scope(self) -> str:
        user_id = getattr(self.request.state, "user_id", None)
        if user_id:
            return str(user_id)
        host = self.request.client.host if self.request.client else "unknown"
        return f"ip:{host}"

    async def _request_hash(self, streamed: StreamedBody | None) -> str:
        digest = hashlib.sha256(f"{self.request.method} {self.request.url.path}\n".encode())
        if streamed is not None:
            digest.update((await streamed.digest()).encode())
        elif self.request.headers.get("content-type", "").startswith("application/json"):
            digest.update(await self.request.body())
        return digest.hexdigest()

    async def run(
        self,
        status_code: int,
        produce: Callable[[], Awaitable[BaseModel]],
        *,
        streamed: StreamedBody | None = None,
    ) -> Any:
        """The response of `produce()`, or the stored one for a repeated key and body.

        A `streamed` body is left for `produce` to read; a repeat reads it only to hash it,
        after ending the lookup's transaction (the body may take minutes to arrive)."""
        if self.key is None:
            return _json(status_code, await produce())
        scope = self._scope()
        record = await self.db.get(IdempotencyRecord, (scope, self.key))
        if record is not None and record.created_at < utcnow() - TTL:
            await self.db.execute(
                delete(IdempotencyRecord).where(
                    IdempotencyRecord.scope == scope, IdempotencyRecord.key == self.key
                )
            )
            record = None
        if record is not None:
            if streamed is not None:
                await self.db.commit()
            if record.request_hash != await self._request_hash(streamed):
                raise ValidationFailed(
                    "This Idempotency-Key was used with a different request.",
                    errors=[FieldError(field="Idempotency-Key", message="reused with a new body")],
                )
            return JSONResponse(
                record.body, status_code=record.status_code, headers={REPLAY_HEADER: "true"}
            )
        response = _json(status_code, await produce())
        self.db.add(
            IdempotencyRecord(
                scope=scope,
                key=self.key,
                request_hash=await self._request_hash(streamed),
                status_code=status_code,
                body=response.body_json,
            )
        )
        try:
            await self.db.flush()
        except IntegrityError as exc:
            raise Conflict("A request with this Idempotency-Key is already in progress.") from exc
        return response


async def purge_expired(db: AsyncSession, now: datetime, limit: int) -> int:
    """Delete up to `limit` records older than the replay window; how many."""
    expired = (
        select(IdempotencyRecord.scope, IdempotencyRecord.key)
        .where(IdempotencyRecord.created_at < now - TTL)
        .limit(limit)
    )
    result = await db.execute(
        delete(IdempotencyRecord).where(
            tuple_(IdempotencyRecord.scope, IdempotencyRecord.key).in_(expired)
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


class _Response(JSONResponse):
    def __init__(self, status_code: int, content: Any) -> None:
        super().__init__(content, status_code=status_code)
        self.body_json = content


def _json(status_code: int, model: BaseModel) -> _Response:
    return _Response(status_code, jsonable_encoder(model))


async def _idempotency(
    request: Request,
    db: DbSession,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="Repeat a creating request safely: same key and body within 24 h "
            "returns the first response.",
        ),
    ] = None,
) -> Idempotency:
    return Idempotency(db, request, idempotency_key)


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]


def idempotent(
    status_code: int,
) -> Callable[[Callable[..., Awaitable[BaseModel]]], Callable[..., Awaitable[Any]]]:
    """Make a creating endpoint idempotent: it answers `status_code` with what it returns,
    and a repeat of its `Idempotency-Key` with the same body replays that answer
    (`Idempotency.run`). The endpoint gains the `Idempotency-Key` header; its body is left to
    FastAPI (JSON). A streamed body (an upload) calls `Idempotency.run` itself."""

    def decorate(endpoint: Callable[..., Awaitable[BaseModel]]) -> Callable[..., Awaitable[Any]]:
        signature = inspect.signature(endpoint)

        @functools.wraps(endpoint)
        async def create(*args: Any, idempotency: Idempotency, **kwargs: Any) -> Any:
            return await idempotency.run(status_code, lambda: endpoint(*args, **kwargs))

        added = inspect.Parameter(
            "idempotency", inspect.Parameter.KEYWORD_ONLY, annotation=IdempotencyDep
        )
        create.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*signature.parameters.values(), added]
        )
        return create

    return decorate
