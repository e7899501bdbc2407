"""Handlers of the service credits API: a hold's authorize, capture and void (by its
service or by its timeout), and one-shot usage. Each locks the hold's and the wallet's
heads together, so a hold ends exactly once however many callers race."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from rcc.domain import hold as holds
from rcc.domain import wallet as wallets
from rcc.domain.errors import Conflict, DomainError, NotFound
from rcc.domain.events import (
    CreditsHeld,
    Event,
    HoldAuthorized,
    HoldCaptured,
    HoldVoided,
    hold_stream,
    wallet_stream,
)
from rcc.service import hold_commands as h
from rcc.service.blocks import owner_block
from rcc.service.commands import Command
from rcc.service.lot_window import decide_on_enough_lots
from rcc.service.wallet_refs import ref_of
from rcc.store.hold_timeouts import close_timeout, schedule_timeout
from rcc.store.lot_expiries import schedule_expiries
from rcc.store.unit_of_work import Head, UnitOfWork
from rcc.store.wallet_lots import FRONT_LOTS


class HoldView(msgspec.Struct, frozen=True, kw_only=True):
    """A hold as the API shows it."""

    id: str
    wallet: str
    amount_rcc: int
    status: str  # held, captured, voided
    expires_at: datetime | None
    captured_rcc: int = 0
    released_rcc: int = 0
    reason: str = ""
    timed_out: bool = False


class UsageRecorded(msgspec.Struct, frozen=True, kw_only=True):
    wallet: str
    amount_rcc: int
    balance_rcc: int
    reason: str


def hold_view(state: holds.HoldState) -> HoldView:
    """The API's view of a hold's state."""
    ended = state.status != "held"
    return HoldView(
        id=state.hold_id,
        wallet=ref_of(state.owner_kind, state.wallet_id),
        amount_rcc=state.amount,
        status=state.status,
        expires_at=state.expires_at,
        captured_rcc=state.captured,
        released_rcc=state.amount - state.captured if ended else 0,
        reason=state.note,
        timed_out=state.timed_out,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _open_wallet(head: Head, kind: str) -> wallets.WalletState | NotFound:
    """The wallet, when it exists and its owner is what the reference said it is
    (`user:<org id>` names no wallet)."""
    wallet = head.as_state(wallets.WalletState)
    if not wallet.opened or (wallet.owner_kind or "user") != kind:
        return NotFound(detail="no such wallet")
    return wallet


async def _stage_wallet(
    uow: UnitOfWork, wallet: wallets.WalletState, head: Head, events: list[Event]
) -> wallets.WalletState:
    after = wallets.fold(events, wallet)
    uow.stage(wallet_stream(wallet.wallet_id), head.version, events, after)
    await schedule_expiries(uow.conn, wallet.wallet_id, after, events)
    return after


async def authorize_hold(cmd: h.AuthorizeHold, uow: UnitOfWork) -> HoldView | DomainError:
    """HOLD: draw the amount from the wallet's lots now; the hold voids itself at its
    timeout unless captured or voided before."""
    timeout = timedelta(seconds=cmd.timeout_s)
    refused = (
        holds.amount_error(cmd.amount)
        or holds.reason_error(cmd.reason)
        or holds.timeout_error(timeout)
    )
    if refused:
        return refused
    hold_id = cmd.hold_id or str(uuid.uuid4())
    stream, wallet_id = hold_stream(hold_id), wallet_stream(cmd.wallet_id)
    heads = await uow.lock(stream, wallet_id, front=FRONT_LOTS)  # the front lots (h9)
    wallet = _open_wallet(heads[wallet_id], cmd.wallet_kind)
    if isinstance(wallet, DomainError):
        return wallet
    if blocked := await owner_block(uow, wallet):
        return blocked
    if heads[stream].version:
        return Conflict(detail="this hold id is taken")
    now = _now()
    charged, wallet = await decide_on_enough_lots(
        uow, wallet, lambda w: wallets.hold(w, hold_id, cmd.amount, now, cmd.service, cmd.reason)
    )
    if isinstance(charged, DomainError):
        return charged
    await _stage_wallet(uow, wallet, heads[wallet_id], charged)
    draws = next(e.draws for e in charged if isinstance(e, CreditsHeld))
    began = HoldAuthorized(
        hold_id=hold_id,
        wallet_id=cmd.wallet_id,
        amount=cmd.amount,
        draws=draws,
        service=cmd.service,
        note=cmd.reason,
        expires_at=now + timeout,
        owner_kind=wallet.owner_kind or "user",
    )
    state = holds.evolve(holds.HoldState(), began)
    uow.stage(stream, 0, [began], state)
    await schedule_timeout(uow.conn, hold_id, cmd.wallet_id, now + timeout)
    return hold_view(state)


async def _end_hold(
    uow: UnitOfWork, hold_id: str, service: str | None, captured: int | None, by_timeout: bool
) -> HoldView | DomainError:
    """Capture (`captured` RCC) or void (None) a hold, once."""
    stream = hold_stream(hold_id)
    peeked = (await uow.peek(stream)).as_state(holds.HoldState)
    if refused := holds.settleable(peeked, service):
        return refused
    wallet_id = wallet_stream(peeked.wallet_id)
    # Only the lots the hold drew from: its end returns to them or unpins them (h9).
    drew = {wallet_id: [lot for lot, _ in peeked.draws]}
    heads = await uow.lock(stream, wallet_id, lots_of=drew)
    state = heads[stream].as_state(holds.HoldState)  # re-read under the lock
    if refused := holds.settleable(state, service):
        return refused
    if captured is not None and (bad := holds.capture_error(state, captured)):
        return bad
    if by_timeout and state.expires_at is not None and _now() < state.expires_at:
        return NotFound(detail="this hold is not due yet")
    wallet = _open_wallet(heads[wallet_id], state.owner_kind)
    if isinstance(wallet, DomainError):
        return wallet
    took = captured or 0
    ending = wallets.end_hold(
        wallet, hold_id, state.amount, took, state.draws, _now(),
        service=state.service, timeout=by_timeout,
    )  # fmt: skip
    await _stage_wallet(uow, wallet, heads[wallet_id], ending)
    ended: Event = (
        HoldCaptured(hold_id=hold_id, amount=took)
        if captured is not None
        else HoldVoided(hold_id=hold_id, timeout=by_timeout)
    )
    after = holds.evolve(state, ended)
    uow.stage(stream, heads[stream].version, [ended], after)
    await close_timeout(uow.conn, hold_id)
    return hold_view(after)


async def capture_hold(cmd: h.CaptureHold, uow: UnitOfWork) -> HoldView | DomainError:
    """Settle a hold for what was used; the rest is a HOLD_RELEASE in the same transaction."""
    return await _end_hold(uow, cmd.hold_id, cmd.service, cmd.amount, by_timeout=False)


async def void_hold(cmd: h.VoidHold, uow: UnitOfWork) -> HoldView | DomainError:
    """Return a whole hold (its service, or the scheduler once its timeout has come)."""
    return await _end_hold(uow, cmd.hold_id, cmd.service, None, by_timeout=cmd.service is None)


async def record_usage(cmd: h.RecordUsage, uow: UnitOfWork) -> UsageRecorded | DomainError:
    """USAGE: charge a wallet at once for a service, drawn in the spending order."""
    if refused := holds.amount_error(cmd.amount) or holds.reason_error(cmd.reason):
        return refused
    stream = wallet_stream(cmd.wallet_id)
    head = (await uow.lock(stream, front=FRONT_LOTS))[stream]  # the front lots (h9)
    wallet = _open_wallet(head, cmd.wallet_kind)
    if isinstance(wallet, DomainError):
        return wallet
    if blocked := await owner_block(uow, wallet):
        return blocked
    now = _now()
    used, wallet = await decide_on_enough_lots(
        uow, wallet, lambda w: wallets.use(w, cmd.amount, now, cmd.service, cmd.reason)
    )
    if isinstance(used, DomainError):
        return used
    after = await _stage_wallet(uow, wallet, head, used)
    return UsageRecorded(
        wallet=ref_of(wallet.owner_kind, cmd.wallet_id),
        amount_rcc=cmd.amount,
        balance_rcc=after.balance,
        reason=cmd.reason,
    )


HOLD_HANDLERS: dict[type[Command], Any] = {
    h.AuthorizeHold: authorize_hold,
    h.CaptureHold: capture_hold,
    h.VoidHold: void_hold,
    h.RecordUsage: record_usage,
}
