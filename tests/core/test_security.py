"""Password hashing: a login for an unknown account costs what a wrong password costs."""

from __future__ import annotations

import argon2

from agenthub.core.security import PasswordHasher, unmatchable_hash


def test_unknown_accounts_verify_against_a_hash_of_the_same_cost() -> None:
    hasher = PasswordHasher(time_cost=2, memory_kib=2048)
    real = hasher.hash("correct horse battery")
    stand_in = unmatchable_hash(2, 2048)
    assert argon2.extract_parameters(stand_in) == argon2.extract_parameters(real)
    assert hasher.verify("correct horse battery", real)
    assert not hasher.verify("correct horse battery", None)
