"""`docs/`: the generated settings reference is current, and the pages' links lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agenthub import settings_reference
from agenthub.config import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
SETTINGS_PAGE = DOCS / "settings.md"
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"`[^`\n]*`")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|//|#)", re.I)


def test_settings_reference_is_current() -> None:
    assert SETTINGS_PAGE.read_text(encoding="utf-8") == settings_reference.render(), (
        f"docs/settings.md is stale; run: {settings_reference.REGENERATE}"
    )


def test_unset_defaults_are_explained_for_settings_that_exist() -> None:
    unknown = sorted(settings_reference.UNSET_MEANS.keys() - Settings.model_fields.keys())
    assert not unknown, f"UNSET_MEANS names no setting: {unknown}"


def test_check_exits_1_on_a_stale_page_and_0_on_a_current_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "settings.md"
    page.write_text("# Settings reference\n", encoding="utf-8")
    assert settings_reference.main(["--check", str(page)]) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1 and settings_reference.REGENERATE in message

    page.write_text(settings_reference.render(), encoding="utf-8")
    assert settings_reference.main(["--check", str(page)]) == 0
    assert settings_reference.main(["--check", str(tmp_path / "missing.md")]) == 1


def relative_links(text: str) -> list[str]:
    """The link targets of a Markdown page that are neither external nor in-page anchors,
    code blocks and code spans left out."""
    prose = CODE_SPAN.sub("", FENCE.sub("", text))
    targets = INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)
    return [target for target in targets if not EXTERNAL.match(target)]


def test_link_finder_sees_relative_links_only() -> None:
    text = (
        "See [jobs](jobs.md#retries), [up](../README.md) and [web](https://example.com), "
        "[here](#top), `[code](nowhere.md)`.\n\n```\n[block](nowhere.md)\n```\n\n"
        "[ref]: errors.md\n"
    )
    assert relative_links(text) == ["jobs.md#retries", "../README.md", "errors.md"]


def test_relative_links_between_pages_resolve() -> None:
    pages = sorted(DOCS.glob("*.md"))
    assert SETTINGS_PAGE in pages
    broken = [
        f"{page.name}: {target}"
        for page in pages
        for target in relative_links(page.read_text(encoding="utf-8"))
        if not (page.parent / target.split("#", 1)[0].split("?", 1)[0]).exists()
    ]
    assert not broken, f"links to files that do not exist: {broken}"
