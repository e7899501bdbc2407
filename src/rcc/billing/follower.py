"""`BillingFollower`: records each wallet's billing-state changes as events.

A subscriber of the one log follower (rcc.follower). It keeps each wallet's balance as
the sum of its ledger deltas (invariant 2) in `billing_states`, and when a ledger event
moves the wallet to another state it appends one BILLING_STATE_CHANGED to the stream
`billing-<wallet>`. Rows, events and the checkpoint commit in the batch's transaction,
so each change is recorded exactly once, whatever crashes (the log is read in commit
order, (transaction, position), not in position order: the checkpoint, not a
position, says what was folded). Each transition carries the position of the ledger
event that caused it (`at_position`): wallet + position is its key.

Why a follower and not the ledger transaction: the create-job path (`rcc bench ledger`)
stays as it was; the cost is a lag of one batch (milliseconds) between a debit and the
transition that it causes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from rcc.domain.billing import INITIAL, BillingState, change
from rcc.domain.events import BillingStateChanged, LedgerEvent, billing_stream
from rcc.follower.decoding import Decoded
from rcc.policy.wallets import Thresholds, low_balance_thresholds
from rcc.store.event_store import StreamWrite, append

NAME = "billing_states"
WALLET_PREFIX = "wallet-"

# Loads, at a batch's start, the thresholds of the batch's wallets (the follower decides
# synchronously per event, at the event's time).
ThresholdLoader = Callable[[asyncpg.Connection, set[str]], Awaitable[Thresholds]]


def policy_thresholds(default: int) -> ThresholdLoader:
    """The `billing.low_balance_rcc` policy per wallet scope; `default` (the environment's
    RCC_LOW_BALANCE_RCC) where no scope has a value."""

    async def load(conn: asyncpg.Connection, wallets: set[str]) -> Thresholds:
        return await low_balance_thresholds(conn, wallets, default)

    return load


@dataclass(frozen=True)
class Move:
    """One ledger event's effect on a wallet's balance (for watchers: auto top-up)."""

    wallet_id: str
    position: int
    before: int
    after: int


# Called in the batch's transaction with the batch's moves, after the states are saved.
Watcher = Callable[[asyncpg.Connection, list[Move]], Awaitable[None]]


@dataclass
class Row:
    balance: int
    state: BillingState
    last_position: int
    updated_at: datetime | None = None
    dirty: bool = False


class BillingFollower:
    """Folds ledger events into billing states; appends a transition per change."""

    name = NAME

    def __init__(self, thresholds: ThresholdLoader, watchers: Sequence[Watcher] = ()) -> None:
        self.thresholds = thresholds
        self.watchers = list(watchers)

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Decoded]) -> None:
        """Fold this batch's ledger events (inside the batch's transaction)."""
        ledger = [
            (record, event)
            for record, event in events
            if isinstance(event, LedgerEvent) and record.stream_id.startswith(WALLET_PREFIX)
        ]
        if not ledger:
            return
        wallets = {record.stream_id[len(WALLET_PREFIX) :] for record, _ in ledger}
        rows = await _load(conn, wallets)
        threshold_at = await self.thresholds(conn, wallets)
        changes: dict[str, list[BillingStateChanged]] = {}
        moves: list[Move] = []
        for record, event in ledger:
            wallet = record.stream_id[len(WALLET_PREFIX) :]
            row = rows.setdefault(wallet, Row(balance=0, state=INITIAL, last_position=0))
            moves.append(Move(wallet, record.position, row.balance, row.balance + event.delta))
            row.balance += event.delta
            row.last_position = max(row.last_position, record.position)
            row.updated_at, row.dirty = record.recorded_at, True
            # The threshold in effect when the event was recorded, however late we fold it.
            threshold = threshold_at(wallet, record.recorded_at)
            new = change(row.state, row.balance, threshold)
            if new is not None:
                changes.setdefault(wallet, []).append(
                    BillingStateChanged(
                        wallet_id=wallet,
                        previous=row.state,
                        state=new,
                        balance=row.balance,
                        threshold=threshold,
                        at_position=record.position,
                    )
                )
                row.state = new
        if changes:
            writes = [
                StreamWrite(stream_id=billing_stream(w), expected_version=-1, events=list(evs))
                for w, evs in sorted(changes.items())
            ]
            await append(conn, writes, {"actor": "billing-follower"})
        await _save(conn, {w: r for w, r in rows.items() if r.dirty})
        for watcher in self.watchers:
            await watcher(conn, moves)


async def _load(conn: asyncpg.Connection, wallets: set[str]) -> dict[str, Row]:
    found = await conn.fetch(
        "SELECT wallet_id, balance, state, last_position FROM billing_states"
        " WHERE wallet_id = ANY($1::text[])",
        sorted(wallets),
    )
    return {
        r["wallet_id"]: Row(
            balance=r["balance"], state=r["state"], last_position=r["last_position"]
        )
        for r in found
    }


async def _save(conn: asyncpg.Connection, rows: dict[str, Row]) -> None:
    if not rows:
        return
    items = sorted(rows.items())
    await conn.execute(
        """INSERT INTO billing_states (wallet_id, balance, state, last_position, updated_at)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[],
                                $5::timestamptz[])
           ON CONFLICT (wallet_id) DO UPDATE SET balance = EXCLUDED.balance,
               state = EXCLUDED.state, last_position = EXCLUDED.last_position,
               updated_at = EXCLUDED.updated_at""",
        [w for w, _ in items],
        [r.balance for _, r in items],
        [r.state for _, r in items],
        [r.last_position for _, r in items],
        [r.updated_at for _, r in items],
    )
