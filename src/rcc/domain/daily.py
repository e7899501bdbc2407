"""Daily spending limits: what a wallet spent on the current UTC day, and the refusal.

The count lives in the wallet's state (folded from the day each reserve and release
carries), so the check runs under the wallet's lock that the reserve already holds:
concurrent jobs of one wallet are decided one after the other and never exceed it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from rcc.domain.errors import DailyLimitReached


class DailySpend(Protocol):
    @property
    def spend_day(self) -> str: ...

    @property
    def spent_today(self) -> int: ...


def day_of(now: datetime) -> str:
    """The UTC day an instant falls on, as YYYY-MM-DD."""
    return now.astimezone(UTC).date().isoformat()


def resets_at(now: datetime) -> datetime:
    """The next UTC midnight: when today's count starts again from zero."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)


def counted(day: str, spent: int, event_day: str, amount: int) -> dict[str, Any]:
    """The wallet's (spend_day, spent_today) after a reserve (+) or release (-) on
    `event_day`. Events from before daily limits carry no day and count nothing; a
    release never takes the day below zero (its job may have been reserved earlier)."""
    if not event_day:
        return {}
    if event_day != day:
        return {"spend_day": event_day, "spent_today": max(amount, 0)}
    return {"spent_today": max(spent + amount, 0)}


def release_day(wallet: DailySpend, now: datetime) -> str:
    """The day a release gives back: today, when the wallet counts today's spending
    (a daily limit applies to it), else none, so wallets without limits record nothing."""
    today = day_of(now)
    return today if wallet.spend_day == today else ""


def used_today(wallet: DailySpend, now: datetime) -> int:
    """What the wallet has spent today (0 when its last spend was on an earlier day)."""
    return wallet.spent_today if wallet.spend_day == day_of(now) else 0


def daily_limit_refusal(
    wallet: DailySpend, cost: int, limit: int | None, now: datetime
) -> DailyLimitReached | None:
    """Refuse a charge that would take today's spending above `limit` (None: no limit)."""
    if limit is None:
        return None
    used = used_today(wallet, now)
    if used + cost <= limit:
        return None
    reset = resets_at(now)
    return DailyLimitReached(
        detail=f"today's limit is {limit} RCC and {used} RCC are used; this job costs {cost}",
        used_rcc=used,
        limit_rcc=limit,
        resets_at=reset.isoformat().replace("+00:00", "Z"),
        retry_after_s=max(1, int((reset - now).total_seconds()) + 1),
    )
