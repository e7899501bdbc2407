"""Billing states: what a wallet's balance says about it, as a pure function.

`healthy` above the low-balance threshold, `low_balance` at or below it while
something is left, `depleted` when nothing is left to spend. A wallet that has never
had credits starts `depleted` without an event: only changes are recorded.
"""

from __future__ import annotations

from typing import Literal

BillingState = Literal["healthy", "low_balance", "depleted"]
STATES: tuple[BillingState, ...] = ("healthy", "low_balance", "depleted")
INITIAL: BillingState = "depleted"  # a wallet opened with nothing in it


def state_for(balance: int, threshold: int) -> BillingState:
    """The state a balance implies under a low-balance threshold (RCC)."""
    if balance <= 0:
        return "depleted"
    if balance <= threshold:
        return "low_balance"
    return "healthy"


def change(previous: BillingState, balance: int, threshold: int) -> BillingState | None:
    """The new state if this balance moves the wallet out of `previous`, else None."""
    now = state_for(balance, threshold)
    return None if now == previous else now


_RANK: dict[str, int] = {state: rank for rank, state in enumerate(STATES)}


def is_downward(previous: str, state: str) -> bool:
    """True when the wallet got worse off (a notice is owed), not when it recovered."""
    return _RANK[state] > _RANK[previous]
