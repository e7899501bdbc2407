"""The wallet aggregate: a balance that only ledger events move, never below zero."""

from __future__ import annotations

import msgspec

from rcc.domain.errors import (
    DomainError,
    InsufficientCredits,
    Invalid,
    NotFound,
    PayloadTooLarge,
    TooManyJobs,
)
from rcc.domain.events import (
    AdminBypassed,
    CreditsAdjusted,
    CreditsClawedBack,
    CreditsReleased,
    CreditsReserved,
    Event,
    JobSettled,
    LedgerEvent,
    WalletOpened,
)

# The largest balance a wallet may hold: far beyond any real use, inside PostgreSQL's
# bigint (the projections' balance columns) and JavaScript's exact integers (2**53).
MAX_BALANCE_RCC = 10**15
# An adjustment's reason is stored in its event forever: bounded like every free-form
# payload (the admin page allows 500 characters; 4 bytes each at most in UTF-8).
MAX_NOTE_BYTES = 2000


class WalletState(msgspec.Struct, frozen=True, kw_only=True):
    wallet_id: str = ""
    owner_kind: str = ""
    owner_id: str = ""
    balance: int = 0
    opened: bool = False
    open_jobs: int = 0  # created and not yet ended: limits concurrent jobs per wallet


def evolve(state: WalletState, event: Event) -> WalletState:
    """Fold one event into the wallet state."""
    match event:
        case WalletOpened():
            return WalletState(
                wallet_id=event.wallet_id,
                owner_kind=event.owner_kind,
                owner_id=event.owner_id,
                opened=True,
            )
        case CreditsReserved() | AdminBypassed():
            return msgspec.structs.replace(
                state, balance=state.balance + event.delta, open_jobs=state.open_jobs + 1
            )
        case CreditsReleased():
            return msgspec.structs.replace(
                state, balance=state.balance + event.delta, open_jobs=state.open_jobs - 1
            )
        case JobSettled():
            return msgspec.structs.replace(state, open_jobs=state.open_jobs - 1)
        case LedgerEvent():
            return msgspec.structs.replace(state, balance=state.balance + event.delta)
    return state


def fold(events: list[Event], state: WalletState | None = None) -> WalletState:
    """The state after a sequence of events."""
    state = state or WalletState()
    for event in events:
        state = evolve(state, event)
    return state


def require_open(state: WalletState) -> NotFound | None:
    if not state.opened:
        return NotFound(detail="wallet not found")
    return None


def debit(state: WalletState, cost: int) -> InsufficientCredits | None:
    """Refuse a debit the balance cannot cover."""
    if state.balance < cost:
        return InsufficientCredits(
            detail=f"this needs {cost} RCC and the balance is {state.balance} RCC",
            balance_rcc=state.balance,
            cost_rcc=cost,
        )
    return None


def open_job_limit(state: WalletState, limit: int | None) -> TooManyJobs | None:
    """Refuse a new job while `limit` jobs of this wallet are still unfinished."""
    if limit is not None and state.open_jobs >= limit:
        return TooManyJobs(
            detail=f"{state.open_jobs} jobs are still unfinished; the limit is {limit}",
            limit=limit,
        )
    return None


def grant_amount_error(amount: int) -> Invalid | None:
    if amount <= 0:
        return Invalid(detail="a grant must be a positive whole number of RCC")
    return None


def adjust(state: WalletState, amount: int, actor: str, note: str) -> list[Event] | DomainError:
    """MANUAL_ADJUST: signed, with a reason, never taking the balance below zero."""
    if amount == 0:
        return Invalid(detail="rcc_delta must not be zero")
    if not note.strip():
        return Invalid(detail="a reason is required for any adjustment")
    if len(encoded := note.encode()) > MAX_NOTE_BYTES:
        return PayloadTooLarge(
            detail=f"the reason is {len(encoded)} bytes; at most {MAX_NOTE_BYTES} are stored",
            limit_bytes=MAX_NOTE_BYTES,
            size_bytes=len(encoded),
        )
    if state.balance + amount < 0:
        return Invalid(
            detail=f"an adjustment of {amount} would take the balance ({state.balance}) below zero"
        )
    if state.balance + amount > MAX_BALANCE_RCC:
        return Invalid(detail=f"a balance may not exceed {MAX_BALANCE_RCC} RCC")
    return [CreditsAdjusted(amount=amount, actor=actor, note=note)]


def claw_back(state: WalletState, amount: int, ref: str | None) -> list[Event]:
    """REFUND_CLAWBACK: take back what was bought, but at most the balance.

    Credits already spent cannot be un-spent; the rest is recorded as the shortfall
    so admins see it, and the balance never goes below zero.
    """
    taken = min(amount, max(state.balance, 0))
    return [CreditsClawedBack(amount=taken, shortfall=amount - taken, ref=ref)]
