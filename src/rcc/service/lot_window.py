"""Deciding a debit on a wallet's front lots, and on more only when it must (h9).

A reserve loads only the first lots in spending order (rcc.store.wallet_lots); the
draws it plans from them are the draws it would plan from every lot whenever they
cover the cost. When they do not, the refusal might be wrong: more are read (a wider
front, then all) and the pure decision is taken again, so the answer is always the one
all lots give.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from rcc.domain.errors import DomainError, InsufficientCredits
from rcc.domain.events import wallet_stream
from rcc.domain.wallet import WalletState
from rcc.store.unit_of_work import UnitOfWork

T = TypeVar("T")


async def decide_on_enough_lots(
    uow: UnitOfWork, wallet: WalletState, decide: Callable[[WalletState], T | DomainError]
) -> tuple[T | DomainError, WalletState]:
    """`decide(wallet)`, taken again on more lots while the loaded ones fall short; with
    the wallet it was decided on, which is the one its events must be folded onto (the
    draws may name lots the first load did not hold: folded onto that, they would be
    lost from the rows written at commit)."""
    outcome = decide(wallet)
    while isinstance(outcome, InsufficientCredits):
        more = await uow.more_lots(wallet_stream(wallet.wallet_id), wallet)
        if more is None:
            break
        wallet = more
        outcome = decide(wallet)
    return outcome, wallet
