"""File names: sanitized for storage and display, encoded for Content-Disposition."""

from __future__ import annotations

import pytest

from agenthub.files.filenames import content_disposition, sanitize_filename


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\notes.txt", "notes.txt"),
        ("dir/", ""),
        ("...", ""),
        (".bashrc", "bashrc"),
        ("trailing. . ", "trailing"),
        ("tab\tand\nnewline.txt", "tab and newline.txt"),
        ("nul\x00byte.txt", "nulbyte.txt"),
        ("rtl\u202eexe.txt", "rtlexe.txt"),
        ('quote".txt', "quote_.txt"),
        ("cafe\u0301.txt", "café.txt"),
    ],
)
def test_sanitize(raw: str, clean: str) -> None:
    assert sanitize_filename(raw) == clean


def test_long_names_keep_their_extension_within_255_bytes() -> None:
    name = sanitize_filename("文" * 200 + ".markdown")
    assert name.endswith(".markdown")
    assert len(name.encode()) <= 255
    assert name.startswith("文")
    no_ext = sanitize_filename("x" * 400)
    assert no_ext == "x" * 255


def test_content_disposition() -> None:
    assert content_disposition("a b.txt") == 'attachment; filename="a b.txt"'
    assert content_disposition("naïve.txt") == (
        "attachment; filename=\"na_ve.txt\"; filename*=UTF-8''na%C3%AFve.txt"
    )
    assert content_disposition("back\\slash.txt") == (
        "attachment; filename=\"back_slash.txt\"; filename*=UTF-8''back%5Cslash.txt"
    )
    assert content_disposition("文件").startswith('attachment; filename="__"; filename*=')
