"""Domain errors are values, returned by decisions and mapped to HTTP by the portal."""

from __future__ import annotations

import msgspec


class DomainError(msgspec.Struct, frozen=True, kw_only=True, tag_field="error"):
    """A command refused by a rule; nothing was written."""

    detail: str


class InsufficientCredits(DomainError, frozen=True, kw_only=True, tag="insufficient_credits"):
    balance_rcc: int
    cost_rcc: int


class IllegalTransition(DomainError, frozen=True, kw_only=True, tag="illegal_transition"):
    status: str
    requested: str


class TooManyJobs(DomainError, frozen=True, kw_only=True, tag="too_many_jobs"):
    limit: int


class NotFound(DomainError, frozen=True, kw_only=True, tag="not_found"):
    pass


class Invalid(DomainError, frozen=True, kw_only=True, tag="invalid"):
    pass


class Conflict(DomainError, frozen=True, kw_only=True, tag="conflict"):
    pass


class PayloadTooLarge(DomainError, frozen=True, kw_only=True, tag="payload_too_large"):
    """A free-form payload bigger than what one event may carry: the log is immutable,
    so nobody may grow it at will."""

    limit_bytes: int
    size_bytes: int


class IdempotencyKeyReused(DomainError, frozen=True, kw_only=True, tag="idempotency_key_reused"):
    """The key was first used for a different command: refusing beats guessing."""


def error_code(error: DomainError) -> str:
    """The snake_case code that clients see in `{"error": ...}`."""
    return str(type(error).__struct_config__.tag)
