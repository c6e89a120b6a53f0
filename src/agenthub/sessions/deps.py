"""Loaders of the sessions routes: the caller's session by path id (404 otherwise), the limit."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path

from agenthub.core.ownership import get_owned
from agenthub.db.models.sessions import ChatSession
from agenthub.db.session import DbSession
from agenthub.web.caller import AppSettings, CurrentUser

SessionId = Annotated[str, Path(max_length=64)]


async def owned_session(session_id: SessionId, user: CurrentUser, db: DbSession) -> ChatSession:
    """The caller's session in any status (active, archived, deleted); 404 for anyone else's."""
    return await get_owned(db, ChatSession, session_id, user.id, what="Session")


async def session_limit(settings: AppSettings) -> int:
    return settings.max_sessions_per_agent_type


OwnedSession = Annotated[ChatSession, Depends(owned_session)]
SessionLimit = Annotated[int, Depends(session_limit)]
