"""Credit lots: every grant is a lot with a priority and maybe an expiry; debits draw
from lots in a defined order and record what they drew.

Pure, like the rest of the domain. Times inside the wallet state are integer
microseconds since the epoch (UTC): the state is cached in the wallet's head row and
decoded on every reserve, and an integer costs far less to decode than a timestamp.

Spending order: the lowest `priority` number first (as Stripe credit grants rank
them), then the soonest expiry (lots without one last), then the oldest, then the lot
id (a total order, so a draw is the same on every replay).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from rcc.domain.events import (
    CreditsAdjusted,
    CreditsRolledOver,
    GrantEvent,
    SignupGranted,
    SubscriptionGranted,
    TopupGranted,
)

# What a lot's priority is unless a grant says otherwise (lower numbers drawn first).
DEFAULT_PRIORITY = 50
# A lot stops being drawable this long before it expires. The decision is taken on the
# service's clock a moment before the event is recorded (on the database's clock); the
# margin keeps every recorded draw before its lot's expiry, which the audit checks.
DRAW_GUARD = timedelta(seconds=1)
# A release whose lot expired meanwhile comes back as a new lot lasting at least this.
RELEASE_GRACE = timedelta(days=7)

Draw = tuple[str, int]  # (lot id, amount): one part of a debit, or of its release


def lot_source(event: GrantEvent | CreditsAdjusted) -> str:
    """The source a grant's lot is listed under (the wallet state and the `lots` read
    model name it alike); an admin's grant or adjustment is "manual"."""
    match event:
        case CreditsRolledOver():
            return "rollover"
        case SignupGranted():
            return "signup"
        case TopupGranted():
            return "topup"
        case SubscriptionGranted():
            return "subscription"
    return "manual"


class LotPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How long each kind of grant lasts (None: never expires). Set in rcc.config."""

    signup_days: int | None = 30
    topup_days: int | None = 365
    # A backstop: a month's credits end when the next month's are granted (see
    # rcc.domain.subscription_months), or after this if no next month comes.
    subscription_days: int | None = 31
    subscription_rollover_rcc: int = 0  # carried into the next month, at most


class Lot(msgspec.Struct, frozen=True, array_like=True):
    """One grant's credits. Stored as a JSON array: the state stays compact."""

    id: str
    source: str  # signup, topup, subscription, manual, migrated, release
    amount: int
    remaining: int
    priority: int
    effective_us: int
    expires_us: int | None
    ref: str | None = None

    def live_at(self, now_us: int) -> bool:
        """Unexpired at this instant."""
        return self.expires_us is None or now_us < self.expires_us


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_GUARD_US = DRAW_GUARD // _US


def to_us(moment: datetime) -> int:
    """A UTC datetime as integer microseconds since the epoch (exact, unlike a float)."""
    return (moment - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """Integer microseconds since the epoch as a UTC datetime."""
    return _EPOCH + timedelta(microseconds=us)


def spending_key(lot: Lot) -> tuple[int, bool, int, int, int]:
    """The spending order, as a sort key."""
    number = int(lot.id[1:]) if lot.id[1:].isdigit() else 0
    return (
        lot.priority,
        lot.expires_us is None,
        lot.expires_us or 0,
        lot.effective_us,
        number,
    )


def available(lots: tuple[Lot, ...], now_us: int) -> int:
    """What can be spent at this instant: the sum of the unexpired remainders."""
    return sum(lot.remaining for lot in lots if lot.live_at(now_us))


def drawable(lots: tuple[Lot, ...], now_us: int) -> list[Lot]:
    """Lots a debit may draw from now, in spending order (the guard before expiry left out)."""
    guard_us = now_us + _GUARD_US
    usable = [lot for lot in lots if lot.remaining > 0 and lot.live_at(guard_us)]
    if len(usable) < 2:  # the usual wallet: nothing to rank
        return usable
    return sorted(usable, key=spending_key)


def plan_draws(lots: list[Lot], amount: int) -> tuple[list[Draw], int]:
    """Take `amount` from these lots in the order given; returns the draws and what
    could not be covered."""
    draws: list[Draw] = []
    left = amount
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            draws.append((lot.id, take))
            left -= take
    return draws, left


def apply_draws(
    lots: tuple[Lot, ...], draws: list[Draw] | tuple[Draw, ...], sign: int
) -> tuple[Lot, ...]:
    """The lots after taking (sign -1) or returning (sign +1) these draws."""
    by_id = dict(draws_total(draws))
    if not by_id:
        return lots
    return tuple(
        msgspec.structs.replace(lot, remaining=lot.remaining + sign * by_id[lot.id])
        if lot.id in by_id
        else lot
        for lot in lots
    )


def returned_part(drawn: list[Draw] | tuple[Draw, ...], amount: int) -> tuple[Draw, ...]:
    """The part of `drawn` that a capture below the hold gives back: `amount` taken from
    the last draws first, so what is kept (captured) is what the spending order drew
    first. Deterministic: the audit recomputes it from the reserve's draws."""
    back: list[Draw] = []
    left = amount
    for lot_id, n in reversed(drawn):
        if left <= 0:
            break
        take = min(n, left)
        back.append((lot_id, take))
        left -= take
    return tuple(reversed(back))


def draws_total(draws: list[Draw] | tuple[Draw, ...]) -> dict[str, int]:
    """Draws summed per lot."""
    total: dict[str, int] = {}
    for lot_id, amount in draws:
        total[lot_id] = total.get(lot_id, 0) + amount
    return total


def prune(lots: tuple[Lot, ...], pinned: dict[str, int]) -> tuple[Lot, ...]:
    """Drop exhausted lots no open job drew from: the state keeps only what can still
    be spent or returned to."""
    if all(lot.remaining > 0 for lot in lots):
        return lots
    return tuple(lot for lot in lots if lot.remaining > 0 or lot.id in pinned)


def pin(pinned: dict[str, int], draws: tuple[Draw, ...], sign: int) -> dict[str, int]:
    """Count open jobs per lot up (a reserve) or down (its job ended)."""
    if not draws:
        return pinned
    counts = dict(pinned)
    for lot_id in {lot_id for lot_id, _ in draws}:
        counts[lot_id] = counts.get(lot_id, 0) + sign
        if counts[lot_id] <= 0:
            del counts[lot_id]
    return counts


def lifetime(policy: LotPolicy, source: str) -> timedelta | None:
    """How long a grant of this source lasts by the policy (None: no expiry)."""
    days = {
        "signup": policy.signup_days,
        "topup": policy.topup_days,
        "subscription": policy.subscription_days,
    }.get(source)
    return None if days is None else timedelta(days=days)
