"""The specification prompt, and reading a model's answer into a `Spec`.

The model is asked for one JSON object. What comes back is read leniently: a JSON object
(bare, inside a ```json fence, or amid prose) with a `sections` list is taken as asked;
anything else is read as Markdown, `# title` then `#`/`##` headings as sections, so a model
that ignored the format (or the offline echo runner, which answers with the idea itself)
still yields a usable specification.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from agenthub.ideas.schemas import TITLE_MAX, Spec, SpecSection
from agenthub.runners.base import ChatMessage

DEFAULT_SECTIONS = (
    "Overview",
    "Goals and non-goals",
    "Users and use cases",
    "Functional requirements",
    "Non-functional requirements",
    "Architecture",
    "Data model",
    "API",
    "Milestones",
    "Open questions",
)
FALLBACK_HEADING = "Overview"
UNTITLED = "Untitled idea"

_FENCE = re.compile(r"```[ \t]*(?:json)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
_HEADING = re.compile(r"^(#{1,2})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_CODE_FENCE = ("```", "~~~")


def prompt(idea: str, sections: Sequence[str], language: str | None) -> list[ChatMessage]:
    """The instructions as the system message, the idea itself as the user message."""
    shape = '{"title": "...", "summary": "...", "sections": [{"heading": "...", "body": "..."}]}'
    instructions = "\n".join(
        [
            "You turn a product idea into a software specification.",
            f"Answer with one JSON object and nothing else, shaped like {shape}.",
            f"Write these sections, in this order: {'; '.join(sections or DEFAULT_SECTIONS)}.",
            "Each body is Markdown. The summary is two or three sentences.",
            f"Write in {language}." if language else "Write in the language of the idea.",
        ]
    )
    return [ChatMessage("system", instructions), ChatMessage("user", idea)]


def parse(text: str, idea: str, model: str | None = None) -> Spec:
    """The specification in the model's answer `text` to `idea`."""
    spec = _from_json(text, idea) or _from_markdown(text, idea)
    return spec.model_copy(update={"model": model})


def title_of(idea: str) -> str:
    """A title from the idea's first non-empty line (without Markdown heading marks)."""
    first = next((line for line in idea.splitlines() if line.strip()), "")
    return _clip(first.lstrip("#").strip()) or UNTITLED


def _clip(text: str) -> str:
    return text if len(text) <= TITLE_MAX else text[: TITLE_MAX - 1].rstrip() + "…"


def _json_object(text: str) -> dict[str, Any] | None:
    candidates = [match.group(1) for match in _FENCE.finditer(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _text(value: Any) -> str:
    """A JSON value as Markdown text: strings as they are, lists as bullets."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, list):
        return "\n".join(f"- {_text(item)}" for item in value)
    return json.dumps(value, ensure_ascii=False)


def _from_json(text: str, idea: str) -> Spec | None:
    data = _json_object(text)
    if data is None or not isinstance(data.get("sections"), list):
        return None
    items = [
        item
        for item in data["sections"]
        if isinstance(item, dict) and (item.get("heading") or item.get("body"))
    ]
    sections = [
        SpecSection(
            heading=_clip(_text(item.get("heading"))) or f"Section {number}",
            body=_text(item.get("body")),
        )
        for number, item in enumerate(items, start=1)
    ]
    if not sections:
        return None
    title = _clip(_text(data.get("title"))) or title_of(idea)
    return Spec(
        title=title, summary=_text(data.get("summary")) or None, sections=sections, format="json"
    )


def _from_markdown(text: str, idea: str) -> Spec:
    title: str | None = None
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    in_code = False
    for line in text.splitlines():
        if line.lstrip().startswith(_CODE_FENCE):
            in_code = not in_code
        heading = None if in_code else _HEADING.match(line)
        if heading and heading.group(1) == "#" and title is None and not sections:
            title = heading.group(2)
        elif heading:
            sections.append((heading.group(2), []))
        else:
            (sections[-1][1] if sections else preamble).append(line)
    intro = "\n".join(preamble).strip()
    parsed = [SpecSection(heading=_clip(h), body="\n".join(body).strip()) for h, body in sections]
    if not parsed:
        parsed = [SpecSection(heading=FALLBACK_HEADING, body=intro or text.strip())]
        intro = ""
    return Spec(
        title=_clip(title) if title else title_of(idea),
        summary=intro or None,
        sections=parsed,
        format="markdown",
        raw=text,
    )
