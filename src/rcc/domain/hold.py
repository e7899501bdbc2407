"""The hold aggregate (a service's two-phase charge): held, then ended exactly once by
a capture (≤ what it holds), a void, or its timeout. Pure, like the rest of the domain."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from rcc.domain.errors import IllegalTransition, Invalid, NotFound
from rcc.domain.events import Draws, Event, HoldAuthorized, HoldCaptured, HoldVoided

# Bounds on what a service may ask (checked before anything is locked).
MAX_HOLD_RCC = 10**12  # far above any real charge, far below the balance ceiling
MIN_TIMEOUT = timedelta(seconds=1)
MAX_TIMEOUT = timedelta(days=7)
MAX_REASON_CHARS = 200


class HoldState(msgspec.Struct, frozen=True, kw_only=True):
    hold_id: str = ""
    wallet_id: str = ""
    amount: int = 0
    draws: Draws = ()
    service: str = ""
    note: str = ""
    expires_at: datetime | None = None
    status: str = ""  # held, captured, voided
    captured: int = 0
    timed_out: bool = False
    owner_kind: str = "user"  # the wallet's owner: `user` or `org`


def evolve(state: HoldState, event: Event) -> HoldState:
    """Fold one event into the hold state."""
    match event:
        case HoldAuthorized():
            return HoldState(
                hold_id=event.hold_id,
                wallet_id=event.wallet_id,
                amount=event.amount,
                draws=event.draws,
                service=event.service,
                note=event.note,
                expires_at=event.expires_at,
                status="held",
                owner_kind=event.owner_kind,
            )
        case HoldCaptured():
            return msgspec.structs.replace(state, status="captured", captured=event.amount)
        case HoldVoided():
            return msgspec.structs.replace(state, status="voided", timed_out=event.timeout)
    return state


def amount_error(amount: int) -> Invalid | None:
    """Refuse an amount a hold or a usage may not have."""
    if not 1 <= amount <= MAX_HOLD_RCC:
        return Invalid(detail=f"amount_rcc must be between 1 and {MAX_HOLD_RCC}")
    return None


def reason_error(reason: str) -> Invalid | None:
    """A reason is required (it is the ledger line's text) and bounded."""
    if not reason.strip() or len(reason) > MAX_REASON_CHARS:
        return Invalid(detail=f"reason must be 1 to {MAX_REASON_CHARS} characters")
    return None


def timeout_error(timeout: timedelta) -> Invalid | None:
    """A hold lasts between MIN_TIMEOUT and MAX_TIMEOUT."""
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        return Invalid(
            detail=f"timeout_s must be between {MIN_TIMEOUT.seconds} and "
            f"{int(MAX_TIMEOUT.total_seconds())} seconds"
        )
    return None


def settleable(
    state: HoldState, service: str | None, requested: str = "settled"
) -> NotFound | IllegalTransition | None:
    """A hold may be captured or voided only by its own service and only while held.
    Another service's hold answers as if it did not exist (no probing of hold ids);
    `service` None is the scheduler, which may void any hold."""
    if not state.status or (service is not None and state.service != service):
        return NotFound(detail="no such hold")
    if state.status != "held":
        return IllegalTransition(
            detail=f"this hold is already {state.status}; it ends only once",
            status=state.status,
            requested=requested,
        )
    return None


def capture_error(state: HoldState, amount: int) -> Invalid | None:
    """A capture takes 0..the amount held."""
    if not 0 <= amount <= state.amount:
        return Invalid(detail=f"amount_rcc must be between 0 and the {state.amount} RCC held")
    return None
