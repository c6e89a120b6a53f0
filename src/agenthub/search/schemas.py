"""Response bodies of `/v1/search`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SearchType = Literal["messages", "sessions"]
"""What to search. `ideas` joins with the jobs issue; until then it is refused (422)."""


class SearchHit(BaseModel):
    """One match, best first. `snippet` is HTML-safe: the text around the match, escaped, with
    the matched words in `<mark>…</mark>`. The other strings are plain text."""

    model_config = ConfigDict(from_attributes=True)

    type: Literal["message", "session"]
    id: str = Field(description="The message id (`msg_...`) or session id (`ses_...`)")
    session_id: str
    title: str | None = Field(
        default=None, description="The session's title (for messages: the session's)"
    )
    role: str | None = Field(default=None, description="Messages only: the message's role")
    snippet: str
    rank: float = Field(
        description="Relevance, higher is better; comparable within one result list only"
    )
    created_at: datetime
