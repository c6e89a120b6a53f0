"""Ids are prefixed, opaque and sort by creation time as plain strings."""

from __future__ import annotations

from agenthub.core.ids import PREFIXES, is_valid, new_id


def test_ids_sort_by_creation_time() -> None:
    ids = [new_id("msg", at_ms=1_700_000_000_000 + step) for step in range(0, 5000, 7)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_ids_within_one_millisecond_are_distinct_and_well_formed() -> None:
    ids = {new_id("usr") for _ in range(2000)}
    assert len(ids) == 2000
    assert all(is_valid(i, "usr") and len(i) == 30 for i in ids)


def test_is_valid_checks_prefix_and_body() -> None:
    good = new_id("ses")
    assert is_valid(good, "ses")
    assert not is_valid(good, "msg")
    assert not is_valid("ses_" + "I" * 26, "ses")  # not Crockford base32
    assert not is_valid("ses_short", "ses")
    assert not is_valid("garbage", "ses")
    assert {
        "usr",
        "prj",
        "agt",
        "ses",
        "msg",
        "tex",
        "job",
        "wfl",
        "fil",
        "key",
        "con",
        "ide",
    } <= PREFIXES


def test_ids_created_in_a_burst_keep_their_order() -> None:
    ids = [new_id("msg") for _ in range(5000)]
    assert ids == sorted(ids)
