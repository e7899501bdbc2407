"""What the read-model queries return: plain msgspec Structs the portal can serialise."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Generic, TypeVar

import msgspec

T = TypeVar("T")


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One page, newest first; pass `next_cursor` back for the next (None: no more)."""

    items: list[T]
    next_cursor: str | None = None


class LedgerEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    user_id: str | None
    delta: int
    reason: str
    job_id: str | None
    external_ref: str | None
    created_at: datetime
    wallet_id: str
    actor: str | None = None
    note: str | None = None


class JobView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    type: str
    cost_rcc: int
    status: str
    duration_ms: int | None
    output_uris: list[str]
    error: str | None
    metadata: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    queued_at: datetime | None = None
    bypass: bool = False
    backend: str | None = None
    prompt_id: str | None = None
    # Why a created or queued job does not run yet; null once it runs (portal/job_views.py).
    waiting_reason: str | None = None
    held_rcc: int = 0  # its hold, while it is open (h1: a job is a hold)
    charged_rcc: int = 0  # what its hold captured, once it succeeded
    template: dict[str, Any] | None = None  # h4: {id, version, name} when built from one
    # While it waits for a GPU: its place in line (1 = next) and when it should start.
    queue_position: int | None = None
    estimated_start_at: datetime | None = None


class UserView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    email: str
    is_admin: bool
    balance_rcc: int
    plan: str | None
    plan_active_until: datetime | None
    created_at: datetime
    last_activity_at: datetime
    wallet_id: str
    payment_issue: str | None = None  # a failed or refused payment, until one succeeds
    payment_issue_at: datetime | None = None


class BalanceView(msgspec.Struct, frozen=True, kw_only=True):
    wallet_id: str
    owner_kind: str
    owner_id: str
    balance_rcc: int
    lifetime_granted: int
    lifetime_consumed: int
    lifetime_adjusted: int
    lifetime_clawed_back: int
    jobs_in_flight: int
    last_position: int
    updated_at: datetime


class PaymentView(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    user_id: str | None
    provider: str
    type: str
    amount: int | None
    currency: str | None
    credits_rcc: int
    status: str
    external_ref: str | None
    detail: str | None
    created_at: datetime
    updated_at: datetime
    credits_granted_rcc: int = 0  # so far (a yearly plan is granted month by month)
    clawed_back_rcc: int = 0
    shortfall_rcc: int = 0  # owed back but already spent (the balance never goes below 0)
    refunded_amount: int = 0


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    at: datetime
    user_id: str | None
    actor: str | None
    ip: str | None
    action: str
    status: str
    detail: str


class DayValue(msgspec.Struct, frozen=True):
    day: date  # a UTC day, or the Monday of a UTC week
    value: int


class Dashboard(msgspec.Struct, frozen=True, kw_only=True):
    """PRD §15: the admin dashboard's KPIs, read from counters, never from events."""

    total_users: int
    active_users: int  # balance > 0 or a plan still active
    admins: int
    jobs_24h: int
    jobs_7d: int
    jobs_in_flight: int
    job_errors_24h: int
    job_errors_7d: int
    rcc_debited_24h: int  # reserved minus released
    rcc_debited_7d: int
    rcc_debited_per_day: list[DayValue]
    rcc_debited_per_week: list[DayValue]
    jobs_per_day: list[DayValue]
    payments_7d: int
    payment_errors_7d: int
    sign_ins_refused_24h: int
    models_installed: int
