"""`docs/security.md` cites tests that exist: each `file::test` names a test function of
that file under `tests/`."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
DOC = TESTS.parent / "docs" / "security.md"
CITATION = re.compile(r"`([\w/]+\.py)::(test_\w+)`")


def test_every_cited_test_exists() -> None:
    cited = CITATION.findall(DOC.read_text())
    assert len(cited) > 50, "the threat model cites too few tests"
    missing = [
        f"{path}::{name}"
        for path, name in sorted(set(cited))
        if not (TESTS / path).is_file()
        or not re.search(rf"^(async )?def {name}\(", (TESTS / path).read_text(), re.M)
    ]
    assert not missing, f"docs/security.md cites tests that do not exist: {missing}"
