"""Response bodies of `/v1/search`."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SearchType = Literal["messages", "sessions", "ideas"]
"""What to search: message contents, session titles, or ideas (idea text and spec title)."""
HitType = Literal["message", "session", "idea"]


class SearchHit(BaseModel):
    """One match, best first. `snippet` is HTML-safe: the text around the match, escaped, with
    the matched words in `<mark>…</mark>`. The other strings are plain text."""

    model_config = ConfigDict(from_attributes=True)

    type: HitType
    id: str = Field(description="The id of the message, session or idea found")
    session_id: str | None = Field(description="The message's or session's; null for ideas")
    title: str | None = Field(
        default=None,
        description="The session's title (for messages: the session's); an idea's spec title",
    )
    role: str | None = Field(default=None, description="Messages only: the message's role")
    snippet: str
    rank: float = Field(
        description="Relevance, higher is better; comparable within one result list only"
    )
    created_at: datetime
