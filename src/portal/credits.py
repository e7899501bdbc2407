"""A wallet's lots as the API shows them: from the `lots` read model (GET /credits/lots,
the pages) or from the wallet's head (GET /me's next expiry, the service API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from portal.schemas import LotView, NextExpiry
from projections.lot_queries import LotRow
from rcc.domain import wallet as wallets
from rcc.domain.lots import Lot, from_us, spending_key, to_us


def wallet_state(head: dict[str, Any] | None) -> wallets.WalletState:
    """The wallet's cached state, as the domain reads it."""
    return msgspec.convert(head or {}, wallets.WalletState)


def live_lots(state: wallets.WalletState, now: datetime) -> list[Lot]:
    """Unexpired lots with something left, in spending order."""
    at = to_us(now)
    return sorted(
        (lot for lot in state.lots if lot.remaining > 0 and lot.live_at(at)), key=spending_key
    )


def lot_view(lot: Lot) -> LotView:
    """One lot of a wallet's head as the service API lists it (never stale)."""
    return LotView(
        id=lot.id,
        source=lot.source,
        amount_rcc=lot.amount,
        remaining_rcc=lot.remaining,
        priority=lot.priority,
        granted_at=from_us(lot.effective_us) if lot.effective_us else None,
        expires_at=from_us(lot.expires_us) if lot.expires_us is not None else None,
        ref=lot.ref,
    )


def lot_row_view(lot: LotRow) -> LotView:
    """One row of the lots read model as `GET /credits/lots` lists it."""
    return LotView(
        id=lot.lot_id,
        source=lot.source,
        amount_rcc=lot.amount,
        remaining_rcc=lot.remaining,
        priority=lot.priority,
        granted_at=lot.granted_at,
        expires_at=lot.expires_at,
        ref=lot.ref,
    )


def next_expiry(state: wallets.WalletState, now: datetime) -> NextExpiry | None:
    """The soonest instant at which unexpired credits expire, and how many."""
    dated = [lot for lot in live_lots(state, now) if lot.expires_us is not None]
    if not dated:
        return None
    soonest = min(lot.expires_us for lot in dated if lot.expires_us is not None)
    amount = sum(lot.remaining for lot in dated if lot.expires_us == soonest)
    return NextExpiry(amount_rcc=amount, expires_at=from_us(soonest))
