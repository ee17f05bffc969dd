"""Validating and normalising what people type: email addresses and display names."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email


class InvalidAddressError(ValueError):
    """An address or name that must not be stored (and must never reach a mail header)."""


def normalise_email(raw: str) -> str:
    """A syntactically valid address, lower-cased, so one person is one subscriber.

    Deliverability (DNS) is not checked here: there is no network at sign-up in tests, and double
    opt-in proves an address works far better than an MX lookup."""
    if any(c in raw for c in "\r\n\0"):
        raise InvalidAddressError(f"invalid email address {raw!r}: contains a line break")
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as e:
        raise InvalidAddressError(f"invalid email address {raw!r}: {e}") from e
    return result.normalized.lower()


def clean_name(raw: str | None) -> str | None:
    if raw is None:
        return None
    if any(c in raw for c in "\r\n\0"):
        raise InvalidAddressError(f"invalid name {raw!r}: contains a line break")
    name = " ".join(raw.split())
    if len(name) > 200:
        raise InvalidAddressError("invalid name: longer than 200 characters")
    return name or None
