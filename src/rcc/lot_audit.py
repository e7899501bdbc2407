"""The audit's checks of every credit lot's history, fed one wallet event at a time.

Kept apart from the wallet's own fold on purpose: it recomputes each lot from the
events alone and checks that

* a lot never goes below zero and nothing draws from a lot that does not exist;
* nothing is drawn from (or returned to) a lot at or after its expiry, judged by the
  time the event was recorded;
* a debit's draws add up to its amount, and a release returns exactly what its job's
  reserve (or its service hold) drew (to the same lots, or as one new lot for what went
  to expired lots); after a capture below the hold, exactly the last draws' part
  (`lots.returned_part`);
* an expiry takes exactly what was left, and never before the lot's time;
* a wallet moving to lots opens its one lot with exactly its balance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from rcc.domain.events import (
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
    LotsOpened,
    SubscriptionLotSuperseded,
    WalletOpened,
)
from rcc.domain.lots import returned_part

Problem = Callable[[str], None]


@dataclass(slots=True)
class _Lot:
    remaining: int
    expires_at: datetime | None
    expired: bool = False


@dataclass
class LotAudit:
    """Every wallet's lots, recomputed from the events."""

    lots: dict[tuple[str, str], _Lot] = field(default_factory=dict)
    lotted: set[str] = field(default_factory=set)  # wallets whose credits live in lots
    reserves: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)
    drawn: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)  # in order
    checked: int = 0  # lots seen

    def see(
        self, wallet: str, event: Event, at: datetime, balance_before: int, problem: Problem
    ) -> None:
        """Check one wallet event recorded at `at`; `problem` records what is wrong."""
        match event:
            case WalletOpened() if event.lots:
                self.lotted.add(wallet)
            case LotsOpened():
                if event.amount != balance_before:
                    problem(f"opened lot {event.lot} with {event.amount}, not the balance")
                self.lotted.add(wallet)
                self._create(wallet, event.lot, event.amount, None, problem)
            case GrantEvent() | CreditsAdjusted() if event.lot is not None and event.amount > 0:
                self._create(wallet, event.lot, event.amount, event.expires_at, problem)
            case CreditsReserved():
                self._draw(wallet, event.draws, event.amount, at, problem)
                self.reserves[f"job {event.job}"] = (wallet, dict(event.draws))
                self.drawn[f"job {event.job}"] = event.draws
            case CreditsHeld():
                self._draw(wallet, event.draws, event.amount, at, problem)
                self.reserves[f"hold {event.hold}"] = (wallet, dict(event.draws))
                self.drawn[f"hold {event.hold}"] = event.draws
            case CreditsAdjusted() | CreditsClawedBack() | CreditsUsed():
                self._draw(wallet, event.draws, -event.delta, at, problem)
            case CreditsReleased():
                self._release(wallet, f"job {event.job}", event, at, problem)
            case HoldReleased():
                self._release(wallet, f"hold {event.hold}", event, at, problem)
            case CreditsExpired():
                self._expire(wallet, event, at, problem)

    def _create(
        self, wallet: str, lot: str, amount: int, expires: datetime | None, problem: Problem
    ) -> None:
        if (wallet, lot) in self.lots:
            problem(f"lot {lot} created twice")
        self.checked += 1
        self.lots[(wallet, lot)] = _Lot(amount, expires)

    def _draw(
        self,
        wallet: str,
        draws: tuple[tuple[str, int], ...],
        amount: int,
        at: datetime,
        problem: Problem,
    ) -> None:
        if wallet not in self.lotted:
            return
        if sum(n for _, n in draws) != amount:
            problem(f"draws {list(draws)} do not add up to {amount}")
        for lot_id, n in draws:
            lot = self._usable(wallet, lot_id, at, "drawn from", problem)
            if lot is None:
                continue
            lot.remaining -= n
            if n <= 0 or lot.remaining < 0:
                problem(f"lot {lot_id} drawn by {n} to {lot.remaining}")

    def _usable(
        self, wallet: str, lot_id: str, at: datetime, what: str, problem: Problem
    ) -> _Lot | None:
        lot = self.lots.get((wallet, lot_id))
        if lot is None:
            problem(f"lot {lot_id} {what} but it does not exist")
        elif lot.expired or (lot.expires_at is not None and at >= lot.expires_at):
            problem(f"lot {lot_id} {what} at {at.isoformat()}, after it expired")
        return lot

    def _release(
        self,
        wallet: str,
        owner: str,
        event: CreditsReleased | HoldReleased,
        at: datetime,
        problem: Problem,
    ) -> None:
        """`owner` ("job <id>" or "hold <id>") returns what it drew: all of it, or after
        a capture exactly `returned_part` of its draws."""
        if wallet not in self.lotted:
            return
        drawn = self.reserves.pop(owner, (wallet, {}))[1]
        in_order = self.drawn.pop(owner, ())
        if event.captured and in_order:
            drawn = dict(returned_part(in_order, event.amount))
        back = dict(event.draws)
        for lot_id, n in back.items():
            if drawn.get(lot_id) != n:
                problem(f"{owner} returned {n} to lot {lot_id}, drew {drawn.get(lot_id)}")
            lot = self._usable(wallet, lot_id, at, "returned to", problem)
            if lot is not None:
                lot.remaining += n
        rest = event.amount - sum(back.values())
        if drawn and rest != sum(n for lot_id, n in drawn.items() if lot_id not in back):
            problem(f"{owner} released {event.amount}, its draws do not account for it")
        if rest and event.relot is None:
            problem(f"{owner} released {rest} RCC to no lot")
        if event.relot is not None:
            self._create(wallet, event.relot, rest, event.relot_expires_at, problem)

    def _expire(self, wallet: str, event: CreditsExpired, at: datetime, problem: Problem) -> None:
        lot = self.lots.get((wallet, event.lot))
        if lot is None or lot.expired:
            problem(f"lot {event.lot} expired but it does not exist (or expired already)")
            return
        # A month's lot ends early, when the next month's credits are granted.
        early = isinstance(event, SubscriptionLotSuperseded)
        if not early and (lot.expires_at is None or at < lot.expires_at):
            problem(f"lot {event.lot} expired at {at.isoformat()}, before its time")
        if event.amount != lot.remaining:
            problem(f"lot {event.lot} expired {event.amount} but {lot.remaining} was left")
        lot.remaining, lot.expired = 0, True
