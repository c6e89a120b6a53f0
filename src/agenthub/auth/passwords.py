"""Which passwords are accepted: Unicode-normalised (NFC, so the same characters typed on
another keyboard or system still match), not a common password, not the account's email."""

from __future__ import annotations

import unicodedata
from functools import cache
from importlib.resources import files

from agenthub.core.errors import FieldError, ValidationFailed

COMMON_PASSWORDS = "common_passwords.txt"
MIN_LOCAL_PART = 3
"""An email's local part shorter than this is not looked for inside a password."""


def normalized(password: str) -> str:
    """The form a password is hashed and checked in (NFC)."""
    return unicodedata.normalize("NFC", password)


def login_forms(password: str) -> tuple[str, ...]:
    """The forms to try at login: NFC, then the raw input if it differs (a password hashed
    before normalisation was introduced, in a non-NFC form, still signs in)."""
    nfc = normalized(password)
    return (nfc,) if nfc == password else (nfc, password)


@cache
def common_passwords() -> frozenset[str]:
    text = files("agenthub.auth").joinpath(COMMON_PASSWORDS).read_text(encoding="utf-8")
    return frozenset(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def weakness(password: str, email: str) -> str | None:
    """Why `password` (normalised) is refused for the account `email`, or None."""
    folded = password.lower()
    address = email.strip().lower()
    local = address.partition("@")[0]
    if folded in common_passwords():
        return "is one of the most common passwords; choose another"
    if address in folded or (len(local) >= MIN_LOCAL_PART and local in folded):
        return "must not contain the email address or its name part"
    return None


def acceptable(password: str, email: str, *, field: str = "password") -> str:
    """`password` normalised, or a 422 naming `field` if it is too weak for `email`."""
    password = normalized(password)
    reason = weakness(password, email)
    if reason is not None:
        raise ValidationFailed(
            f"The {field.replace('_', ' ')} {reason}.",
            errors=[FieldError(field=field, message=reason)],
        )
    return password
