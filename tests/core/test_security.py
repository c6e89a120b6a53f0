"""Password hashing: a login for an unknown account costs what a wrong password costs."""

from __future__ import annotations

import time

import argon2
import pytest

from agenthub.core.security import (
    PasswordHasher,
    TokenError,
    decode_access_token,
    encode_access_token,
    unmatchable_hash,
)

SECRET = "s" * 40


def test_unknown_accounts_verify_against_a_hash_of_the_same_cost() -> None:
    hasher = PasswordHasher(time_cost=2, memory_kib=2048)
    real = hasher.hash("correct horse battery")
    stand_in = unmatchable_hash(2, 2048)
    assert argon2.extract_parameters(stand_in) == argon2.extract_parameters(real)
    assert hasher.verify("correct horse battery", real)
    assert not hasher.verify("correct horse battery", None)


def test_a_token_verified_before_is_still_refused_once_it_expires() -> None:
    token, _ = encode_access_token(SECRET, "usr_1", "lgn_1", minutes=2 / 60)  # 1-2 s left
    claims = decode_access_token(SECRET, token)
    assert (claims["sub"], claims["sid"]) == ("usr_1", "lgn_1")
    claims["sub"] = "usr_2"  # the caller's copy: the next check still sees the token's own
    assert decode_access_token(SECRET, token)["sub"] == "usr_1"
    time.sleep(claims["exp"] - time.time() + 0.01)
    with pytest.raises(TokenError, match="expired"):
        decode_access_token(SECRET, token)


def test_a_token_is_verified_with_the_secret_it_is_checked_against() -> None:
    token, _ = encode_access_token(SECRET, "usr_1", "lgn_1", minutes=5)
    decode_access_token(SECRET, token)
    with pytest.raises(TokenError):
        decode_access_token("another-" + SECRET, token)
    forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    with pytest.raises(TokenError):
        decode_access_token(SECRET, forged)
