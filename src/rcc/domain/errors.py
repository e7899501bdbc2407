"""Domain errors are values, returned by decisions and mapped to HTTP by the portal."""

from __future__ import annotations

from datetime import datetime

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


# --- plans and blocking (h6) ----------------------------------------------------------


class DailyLimitReached(DomainError, frozen=True, kw_only=True, tag="daily_limit_reached"):
    """The plan's (or a policy's) daily spending limit would be exceeded: a 429."""

    used_rcc: int
    limit_rcc: int
    resets_at: str  # RFC 3339, the next UTC midnight
    retry_after_s: int


class AccountBlocked(DomainError, frozen=True, kw_only=True, tag="account_blocked"):
    """An admin blocked the account: it may sign in and read, not spend (a 403)."""

    reason: str


# --- organisations (h5)


class Forbidden(DomainError, frozen=True, kw_only=True, tag="forbidden"):
    """Known, but this caller may not do it (a member managing others, say)."""


class BudgetExceeded(DomainError, frozen=True, kw_only=True, tag="budget_exceeded"):
    """A job would take a member's (or the org's) spending this month past its budget."""

    budget_rcc: int
    used_rcc: int
    resets_at: datetime
    scope: str  # "member" or "org": whose budget refused it


def error_code(error: DomainError) -> str:
    """The snake_case code that clients see in `{"error": ...}`."""
    return str(type(error).__struct_config__.tag)
