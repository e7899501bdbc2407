"""Subscription months (docs/LOTS.md): a month's credits last until the next month's
are granted, and up to a set amount of what is left rolls over into a lot lasting one
more month. Pure: the payment handlers call it in the grant's transaction.

A month's lot is still dated (`RCC_SUBSCRIPTION_CREDITS_DAYS`, a backstop for a
subscription whose next month never comes); the next month ends it at once, whatever
that date says.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from rcc.domain.events import (
    CreditsRolledOver,
    Event,
    SubscriptionGranted,
    SubscriptionLotSuperseded,
)
from rcc.domain.lots import Lot, to_us
from rcc.domain.wallet import WalletState, fold, with_lots


def superseded(state: WalletState, now: datetime) -> list[Lot]:
    """The earlier months' lots the next month's grant ends: subscription lots with
    something left that have not reached their own expiry (those are the scheduler's)."""
    at = to_us(now)
    return [
        lot
        for lot in state.lots
        if lot.source == "subscription" and lot.remaining > 0 and lot.live_at(at)
    ]


def month_grant(
    state: WalletState,
    credits: int,
    now: datetime,
    *,
    lifetime: timedelta | None,
    rollover_cap: int,
    ref: str | None,
    period: str | None,
) -> list[Event]:
    """The events of a subscription month's grant: the earlier months' lots end now,
    up to `rollover_cap` of what they held becomes a lot lasting `lifetime` more, then
    the month's own lot. Lot ids follow the wallet's sequence in that order."""
    opening = with_lots(state, now)
    lotted = fold(opening, state)
    ended = superseded(lotted, now)
    kept = min(sum(lot.remaining for lot in ended), max(rollover_cap, 0))
    seq = lotted.lot_seq
    rollover = f"L{seq + 1}" if kept else None
    month = f"L{seq + (2 if kept else 1)}"
    until = now + lifetime if lifetime else None
    events: list[Event] = [*opening]
    events += [
        SubscriptionLotSuperseded(
            lot=lot.id, amount=lot.remaining, expires_at=now, by=month, rolled_over=rollover
        )
        for lot in ended
    ]
    if rollover is not None:
        events.append(
            CreditsRolledOver(
                amount=kept,
                ref=ended[-1].ref,
                lot=rollover,
                at=now,
                expires_at=until,
                from_lots=tuple(lot.id for lot in ended),
            )
        )
    events.append(
        SubscriptionGranted(
            amount=credits, ref=ref, lot=month, at=now, expires_at=until, period=period
        )
    )
    return events
