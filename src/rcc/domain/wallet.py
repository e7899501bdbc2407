"""The wallet aggregate: lots that only ledger events move, never below zero (see lots.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

import msgspec

from rcc.domain import daily
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
    CreditsExpired,
    CreditsHeld,
    CreditsReleased,
    CreditsReserved,
    CreditsUsed,
    Event,
    GrantEvent,
    HoldReleased,
    HoldSettled,
    JobSettled,
    LedgerEvent,
    LotsOpened,
    WalletOpened,
)
from rcc.domain.lots import (
    DEFAULT_PRIORITY,
    DRAW_GUARD,
    RELEASE_GRACE,
    Draw,
    Lot,
    apply_draws,
    available,
    drawable,
    from_us,
    lot_source,
    pin,
    plan_draws,
    prune,
    returned_part,
    to_us,
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
    balance: int = 0  # the sum of the lots' remainders (expired lots leave by an event)
    opened: bool = False
    open_jobs: int = 0  # created and not yet ended: limits concurrent jobs per wallet
    lots_on: bool = False  # False: a wallet from before lots (see LotsOpened)
    lots: tuple[Lot, ...] = ()  # what can be spent or returned to; exhausted lots leave
    # How many open jobs drew from each lot: an exhausted lot stays while a job may
    # still return credits to it (bounded by the lots, not by the open jobs).
    pinned: dict[str, int] = {}
    lot_seq: int = 0  # lots created so far: the next lot is L<lot_seq + 1>
    # What jobs reserved on `spend_day` (UTC) less what was released that day: the daily
    # limit is checked against it under this wallet's lock (rcc.domain.daily, h6).
    spend_day: str = ""
    spent_today: int = 0
    held: int = 0  # set aside by open service holds (out of the balance already)


def evolve(state: WalletState, event: Event) -> WalletState:
    """Fold one event into the wallet state."""
    match event:
        case WalletOpened():
            return WalletState(
                wallet_id=event.wallet_id,
                owner_kind=event.owner_kind,
                owner_id=event.owner_id,
                opened=True,
                lots_on=event.lots,
            )
        case LotsOpened():
            opened = _new_lot(state, event.lot, "migrated", event.amount, event.at, None)
            return msgspec.structs.replace(opened, lots_on=True)
        case CreditsReserved():
            return msgspec.structs.replace(
                state,
                balance=state.balance - event.amount,
                open_jobs=state.open_jobs + 1,
                lots=apply_draws(state.lots, event.draws, -1),
                pinned=pin(state.pinned, event.draws, +1),
                **daily.counted(state.spend_day, state.spent_today, event.day, event.amount),
            )
        case AdminBypassed():
            return msgspec.structs.replace(state, open_jobs=state.open_jobs + 1)
        case CreditsReleased():
            return _released(state, event)
        case JobSettled():
            return _unpinned(
                msgspec.structs.replace(state, open_jobs=state.open_jobs - 1), event.draws
            )
        case GrantEvent() | CreditsAdjusted() if event.delta > 0 and event.lot is not None:
            after = _new_lot(
                state, event.lot, lot_source(event), event.amount, event.at, event.expires_at,
                priority=event.priority, ref=event.external_ref,
            )  # fmt: skip
            return msgspec.structs.replace(after, balance=state.balance + event.amount)
        case CreditsHeld():
            return msgspec.structs.replace(
                state,
                balance=state.balance - event.amount,
                held=state.held + event.amount,
                lots=apply_draws(state.lots, event.draws, -1),
                pinned=pin(state.pinned, event.draws, +1),
            )
        case HoldReleased():
            return _hold_released(state, event)
        case HoldSettled():
            return _unpinned(
                msgspec.structs.replace(state, held=state.held - event.held), event.drawn
            )
        case CreditsAdjusted() | CreditsClawedBack() | CreditsUsed():
            lots = apply_draws(state.lots, event.draws, -1)
            return msgspec.structs.replace(
                state, balance=state.balance + event.delta, lots=prune(lots, state.pinned)
            )
        case CreditsExpired():
            # The lot ends here, even a month's lot ended before its own date by the
            # next month's grant: a job still pinning it must not be released into it.
            ended = to_us(event.expires_at) if event.expires_at else None
            lots = tuple(
                msgspec.structs.replace(lot, remaining=0, expires_us=ended or lot.expires_us)
                if lot.id == event.lot
                else lot
                for lot in state.lots
            )
            return msgspec.structs.replace(
                state, balance=state.balance - event.amount, lots=prune(lots, state.pinned)
            )
        case LedgerEvent():
            return msgspec.structs.replace(state, balance=state.balance + event.delta)
    return state


def _new_lot(
    state: WalletState,
    lot_id: str,
    source: str,
    amount: int,
    at: datetime | None,
    expires_at: datetime | None,
    *,
    priority: int = DEFAULT_PRIORITY,
    ref: str | None = None,
) -> WalletState:
    """The state with one more lot (a lot of nothing is not kept)."""
    seq = state.lot_seq + 1
    if amount <= 0:
        return msgspec.structs.replace(state, lot_seq=seq)
    lot = Lot(
        id=lot_id,
        source=source,
        amount=amount,
        remaining=amount,
        priority=priority,
        effective_us=to_us(at) if at else 0,
        expires_us=to_us(expires_at) if expires_at else None,
        ref=ref,
    )
    return msgspec.structs.replace(state, lots=(*state.lots, lot), lot_seq=seq)


def _released(state: WalletState, event: CreditsReleased) -> WalletState:
    """A release: its draws back to their lots, the rest as a new lot (or, before
    lots, only the balance)."""
    after = msgspec.structs.replace(
        state,
        balance=state.balance + event.amount,
        open_jobs=state.open_jobs - 1,
        lots=apply_draws(state.lots, event.draws, +1),
    )
    if event.relot is not None:
        rest = event.amount - sum(amount for _, amount in event.draws)
        after = _new_lot(after, event.relot, "release", rest, event.at, event.relot_expires_at)
    after = msgspec.structs.replace(
        after, **daily.counted(state.spend_day, state.spent_today, event.day, -event.amount)
    )
    return _unpinned(after, event.drawn)


def _hold_released(state: WalletState, event: HoldReleased) -> WalletState:
    """A hold's credits back: its draws to their lots, the rest as a new lot."""
    after = msgspec.structs.replace(
        state,
        balance=state.balance + event.amount,
        held=state.held - event.held,
        lots=apply_draws(state.lots, event.draws, +1),
    )
    if event.relot is not None:
        rest = event.amount - sum(amount for _, amount in event.draws)
        after = _new_lot(after, event.relot, "release", rest, event.at, event.relot_expires_at)
    return _unpinned(after, event.drawn)


def _unpinned(state: WalletState, drawn: tuple[Draw, ...]) -> WalletState:
    """A job ended: its lots are no longer pinned; exhausted ones may leave."""
    if not drawn:
        return state
    pinned = pin(state.pinned, drawn, -1)
    return msgspec.structs.replace(state, pinned=pinned, lots=prune(state.lots, pinned))


def fold(events: list[Event], state: WalletState | None = None) -> WalletState:
    """The state after a sequence of events."""
    state = state or WalletState()
    for event in events:
        state = evolve(state, event)
    return state


def next_lot(state: WalletState) -> str:
    """The id the next lot of this wallet gets."""
    return f"L{state.lot_seq + 1}"


def spendable(state: WalletState, now: datetime) -> int:
    """What can be spent at this instant: unexpired remainders (the balance, before lots)."""
    if not state.lots_on:
        return state.balance
    return available(state.lots, to_us(now))


def with_lots(state: WalletState, now: datetime) -> list[Event]:
    """What a wallet from before lots writes before its first lot-aware event: its whole
    balance as one lot without expiry. Nothing for a wallet that has lots."""
    if state.lots_on:
        return []
    return [LotsOpened(lot=next_lot(state), amount=state.balance, at=now)]


def require_open(state: WalletState) -> NotFound | None:
    if not state.opened:
        return NotFound(detail="wallet not found")
    return None


def _drawable_total(state: WalletState, now: datetime) -> int:
    if not state.lots_on:
        return state.balance
    return sum(lot.remaining for lot in drawable(state.lots, to_us(now)))


def _take(
    state: WalletState, cost: int, now: datetime
) -> tuple[list[Event], tuple[Draw, ...]] | InsufficientCredits:
    """Draw `cost` from the lots in spending order: the opening of lots (for a wallet
    from before them) and the draws, or what is short."""
    opening = with_lots(state, now)
    lotted = fold(opening, state) if opening else state
    draws, short = plan_draws(drawable(lotted.lots, to_us(now)), cost)
    if short:  # what can be drawn now cannot cover it
        can = cost - short
        return InsufficientCredits(
            detail=f"this needs {cost} RCC and the balance is {can} RCC",
            balance_rcc=can,
            cost_rcc=cost,
        )
    return opening, tuple(draws)


def reserve(
    state: WalletState, job: str, cost: int, now: datetime, day: str = ""
) -> list[Event] | InsufficientCredits:
    """JOB_RESERVE: draw the cost from the lots in spending order, recording the draws;
    `day` counts it against that UTC day's limit (empty: no daily limit applies)."""
    taken = _take(state, cost, now)
    if isinstance(taken, InsufficientCredits):
        return taken
    opening, draws = taken
    return [*opening, CreditsReserved(job=job, amount=cost, draws=draws, day=day)]


def hold(
    state: WalletState, hold_id: str, amount: int, now: datetime, service: str, note: str
) -> list[Event] | InsufficientCredits:
    """HOLD: set credits aside for a service, drawn like a job's reserve."""
    taken = _take(state, amount, now)
    if isinstance(taken, InsufficientCredits):
        return taken
    opening, draws = taken
    return [
        *opening,
        CreditsHeld(hold=hold_id, amount=amount, draws=draws, service=service, note=note),
    ]


def use(
    state: WalletState, amount: int, now: datetime, service: str, note: str
) -> list[Event] | InsufficientCredits:
    """USAGE: a service's one-shot charge, drawn in the spending order."""
    taken = _take(state, amount, now)
    if isinstance(taken, InsufficientCredits):
        return taken
    opening, draws = taken
    return [*opening, CreditsUsed(amount=amount, draws=draws, service=service, note=note)]


class GiveBack(msgspec.Struct, frozen=True, kw_only=True):
    """How credits drawn earlier come back: to their lots, the rest as one new lot."""

    draws: tuple[Draw, ...] = ()
    relot: str | None = None
    relot_expires_at: datetime | None = None
    at: datetime | None = None


def give_back(state: WalletState, back: tuple[Draw, ...], amount: int, now: datetime) -> GiveBack:
    """Return `amount` that was drawn as `back`: each draw to its lot while the lot is
    live beyond the draw guard; what was drawn from a lot that has expired since comes
    back as one new lot lasting RELEASE_GRACE, so nobody loses credits to a failure."""
    guard_us = to_us(now + DRAW_GUARD)
    live = {lot.id for lot in state.lots if lot.live_at(guard_us)}
    to_lots = tuple((lot_id, n) for lot_id, n in back if lot_id in live)
    if sum(n for _, n in to_lots) == amount:
        return GiveBack(draws=to_lots)
    return GiveBack(
        draws=to_lots,
        relot=next_lot(state),
        relot_expires_at=now + RELEASE_GRACE,
        at=now,
    )


def release(
    state: WalletState,
    job: str,
    amount: int,
    now: datetime,
    drawn: list[Draw] | tuple[Draw, ...],
    captured: int = 0,
) -> list[Event]:
    """JOB_RELEASE: return exactly what the job drew (`drawn`, kept by the job), or, when
    its success `captured` less than it held, the rest (`amount`, the last draws
    first). See give_back for lots that expired meanwhile."""
    day = daily.release_day(state, now)
    if not drawn:
        # Reserved before lots: a new lot without expiry, as the migrated lot it would
        # have been drawn from never expires.
        if not state.lots_on:
            return [CreditsReleased(job=job, amount=amount, captured=captured, day=day)]
        return [
            CreditsReleased(
                job=job, amount=amount, relot=next_lot(state), at=now, captured=captured, day=day
            )
        ]
    drawn = tuple((lot_id, n) for lot_id, n in drawn)
    back = returned_part(drawn, amount) if captured else drawn
    given = give_back(state, back, amount, now)
    return [
        CreditsReleased(
            job=job,
            amount=amount,
            draws=given.draws,
            drawn=drawn,
            relot=given.relot,
            relot_expires_at=given.relot_expires_at,
            at=given.at,
            captured=captured,
            day=day,
        )
    ]


def end_hold(
    state: WalletState,
    hold_id: str,
    held: int,
    captured: int,
    drawn: tuple[Draw, ...],
    now: datetime,
    *,
    service: str = "",
    timeout: bool = False,
) -> list[Event]:
    """A hold ends: captured in full (HoldSettled), or the rest comes back in the same
    transaction as a HOLD_RELEASE that says what it settles (a void captures 0)."""
    if captured == held:
        return [HoldSettled(hold=hold_id, held=held, drawn=drawn)]
    rest = held - captured
    back = returned_part(drawn, rest) if captured else drawn
    given = give_back(state, back, rest, now)
    return [
        HoldReleased(
            hold=hold_id,
            amount=rest,
            held=held,
            captured=captured,
            draws=given.draws,
            drawn=drawn,
            relot=given.relot,
            relot_expires_at=given.relot_expires_at,
            at=given.at,
            service=service,
            timeout=timeout,
        )
    ]


def expire(state: WalletState, lot_id: str, now: datetime) -> list[Event]:
    """CREDITS_EXPIRED for what is left of a lot whose expiry has come; nothing for a
    lot that is gone, exhausted, or not yet due (so a second scheduler writes nothing)."""
    lot = next((lot for lot in state.lots if lot.id == lot_id), None)
    if lot is None or lot.expires_us is None or lot.remaining <= 0:
        return []
    if to_us(now) < lot.expires_us:
        return []
    return [CreditsExpired(lot=lot_id, amount=lot.remaining, expires_at=from_us(lot.expires_us))]


def grant(
    state: WalletState,
    kind: type[GrantEvent],
    amount: int,
    now: datetime,
    *,
    lifetime: timedelta | None,
    ref: str | None = None,
    **fields: str | None,
) -> list[Event]:
    """A grant as a new lot expiring after `lifetime` (None: never)."""
    opening = with_lots(state, now)
    lotted = fold(opening, state)
    event = kind(
        amount=amount,
        ref=ref,
        lot=next_lot(lotted),
        at=now,
        expires_at=now + lifetime if lifetime else None,
        **fields,  # type: ignore[arg-type]
    )
    return [*opening, event]


def open_job_limit(state: WalletState, limit: int | None) -> TooManyJobs | None:
    """Refuse a new job while `limit` jobs of this wallet are still unfinished."""
    if limit is not None and state.open_jobs >= limit:
        return TooManyJobs(
            detail=f"{state.open_jobs} jobs are queued or running; a user may have {limit}",
            limit=limit,
        )
    return None


def grant_amount_error(amount: int) -> Invalid | None:
    if amount <= 0:
        return Invalid(detail="a grant must be a positive whole number of RCC")
    return None


def adjust(
    state: WalletState,
    amount: int,
    actor: str,
    note: str,
    now: datetime,
    expires_at: datetime | None = None,
) -> list[Event] | DomainError:
    """MANUAL_ADJUST: signed, with a reason, never taking the balance below zero. A
    positive one is a lot (expiring at `expires_at`, if given); a negative one draws
    in the spending order and may take only what can be spent now."""
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
    if expires_at is not None and (amount < 0 or expires_at <= now):
        return Invalid(detail="expires_at needs a positive rcc_delta and a time in the future")
    opening = with_lots(state, now)
    lotted = fold(opening, state)
    can = _drawable_total(lotted, now)
    if can + amount < 0:
        return Invalid(
            detail=f"an adjustment of {amount} would take the balance ({can}) below zero"
        )
    if state.balance + amount > MAX_BALANCE_RCC:
        return Invalid(detail=f"a balance may not exceed {MAX_BALANCE_RCC} RCC")
    if amount > 0:
        event = CreditsAdjusted(
            amount=amount, actor=actor, note=note, lot=next_lot(lotted), at=now,
            expires_at=expires_at,
        )  # fmt: skip
    else:
        draws, _ = plan_draws(drawable(lotted.lots, to_us(now)), -amount)
        event = CreditsAdjusted(amount=amount, actor=actor, note=note, draws=tuple(draws))
    return [*opening, event]


def claw_back(state: WalletState, amount: int, ref: str | None, now: datetime) -> list[Event]:
    """REFUND_CLAWBACK: take back what was bought, but at most what can be spent now:
    from the refunded payment's own lot first, then in the spending order.

    Credits already spent (or expired) cannot be un-spent; the rest is recorded as the
    shortfall so admins see it, and the balance never goes below zero.
    """
    opening = with_lots(state, now)
    lotted = fold(opening, state)
    order = drawable(lotted.lots, to_us(now))
    own = [lot for lot in order if ref is not None and lot.ref == ref]
    draws, shortfall = plan_draws(own + [lot for lot in order if lot not in own], amount)
    taken = amount - shortfall
    return [
        *opening,
        CreditsClawedBack(amount=taken, shortfall=shortfall, ref=ref, draws=tuple(draws)),
    ]
