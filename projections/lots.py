"""Credit lots: one row per lot of every wallet, from the lot events (docs/LOTS.md).

A batch keeps the lots it creates in memory and a remaining-delta for the others, so
it lands with one INSERT and one UPDATE whatever its length. Draws, returns and
expiries are deltas on `remaining`, so the rows do not depend on how the log was cut
into batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from projections._wallets import wallet_of
from projections.read_notify import wallets_changed
from rcc.domain.events import (
    CreditsAdjusted,
    CreditsClawedBack,
    CreditsExpired,
    CreditsHeld,
    CreditsReleased,
    CreditsReserved,
    CreditsUsed,
    Draws,
    GrantEvent,
    HoldReleased,
    LotsOpened,
)
from rcc.domain.lots import DEFAULT_PRIORITY, lot_source
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "lots"
TABLES = ("lots",)

LotKey = tuple[str, str]  # (wallet id, lot id)


@dataclass
class NewLot:
    source: str
    amount: int
    remaining: int
    priority: int
    granted_at: datetime
    expires_at: datetime | None
    ref: str | None
    expired_at: datetime | None = None
    last_position: int = 0


@dataclass
class Change:
    remaining: int = 0
    expired_at: datetime | None = None
    last_position: int = 0


@dataclass
class Batch:
    new: dict[LotKey, NewLot] = field(default_factory=dict)
    changes: dict[LotKey, Change] = field(default_factory=dict)

    def create(self, wallet: str, lot: str, row: NewLot, record: RecordedEvent) -> None:
        row.last_position = record.position
        self.new[(wallet, lot)] = row

    def move(
        self, wallet: str, lot: str, delta: int, record: RecordedEvent, *, expired: bool = False
    ) -> None:
        """Add `delta` to a lot's remainder (and mark its expiry), wherever it lives."""
        at = record.recorded_at if expired else None
        target: NewLot | Change = self.new.get((wallet, lot)) or self.changes.setdefault(
            (wallet, lot), Change()
        )
        target.remaining += delta
        target.last_position = max(target.last_position, record.position)
        if at is not None:
            target.expired_at = at

    def draw(self, wallet: str, draws: Draws, sign: int, record: RecordedEvent) -> None:
        for lot, amount in draws:
            self.move(wallet, lot, sign * amount, record)

    def wallets(self) -> set[str]:
        return {wallet for wallet, _ in self.new} | {wallet for wallet, _ in self.changes}


def on_opened(batch: Batch, event: LotsOpened, record: RecordedEvent) -> None:
    row = NewLot("migrated", event.amount, event.amount, DEFAULT_PRIORITY, event.at, None, None)
    batch.create(wallet_of(record.stream_id), event.lot, row, record)


def on_granted(batch: Batch, event: GrantEvent, record: RecordedEvent) -> None:
    if event.lot is None or event.amount <= 0:
        return  # a grant from before lots
    row = NewLot(
        lot_source(event), event.amount, event.amount, event.priority,
        event.at or record.recorded_at, event.expires_at, event.ref,
    )  # fmt: skip
    batch.create(wallet_of(record.stream_id), event.lot, row, record)


def on_adjusted(batch: Batch, event: CreditsAdjusted, record: RecordedEvent) -> None:
    wallet = wallet_of(record.stream_id)
    if event.amount > 0 and event.lot is not None:
        row = NewLot(
            "manual", event.amount, event.amount, event.priority,
            event.at or record.recorded_at, event.expires_at, None,
        )  # fmt: skip
        batch.create(wallet, event.lot, row, record)
    else:
        batch.draw(wallet, event.draws, -1, record)


def on_drawn(
    batch: Batch,
    event: CreditsReserved | CreditsClawedBack | CreditsHeld | CreditsUsed,
    record: RecordedEvent,
) -> None:
    batch.draw(wallet_of(record.stream_id), event.draws, -1, record)


def on_released(batch: Batch, event: CreditsReleased | HoldReleased, record: RecordedEvent) -> None:
    wallet = wallet_of(record.stream_id)
    batch.draw(wallet, event.draws, +1, record)
    rest = event.amount - sum(amount for _, amount in event.draws)
    if event.relot is not None and rest > 0:
        at = event.at or record.recorded_at
        row = NewLot("release", rest, rest, DEFAULT_PRIORITY, at, event.relot_expires_at, None)
        batch.create(wallet, event.relot, row, record)


def on_expired(batch: Batch, event: CreditsExpired, record: RecordedEvent) -> None:
    batch.move(wallet_of(record.stream_id), event.lot, -event.amount, record, expired=True)


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    if batch.new:
        rows = list(batch.new.values())
        await conn.execute(
            """INSERT INTO lots (wallet_id, lot_id, source, amount, remaining, priority,
                                 granted_at, expires_at, ref, expired_at, last_position)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                                    $5::bigint[], $6::int[], $7::timestamptz[],
                                    $8::timestamptz[], $9::text[], $10::timestamptz[],
                                    $11::bigint[])""",
            [wallet for wallet, _ in batch.new],
            [lot for _, lot in batch.new],
            [r.source for r in rows],
            [r.amount for r in rows],
            [r.remaining for r in rows],
            [r.priority for r in rows],
            [r.granted_at for r in rows],
            [r.expires_at for r in rows],
            [r.ref for r in rows],
            [r.expired_at for r in rows],
            [r.last_position for r in rows],
        )
    if batch.changes:
        changes = list(batch.changes.values())
        await conn.execute(
            """UPDATE lots l
                  SET remaining = l.remaining + d.remaining,
                      expired_at = COALESCE(d.expired_at, l.expired_at),
                      last_position = GREATEST(l.last_position, d.last_position)
                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::timestamptz[],
                             $5::bigint[]) AS d(wallet_id, lot_id, remaining, expired_at,
                                                last_position)
                WHERE l.wallet_id = d.wallet_id AND l.lot_id = d.lot_id""",
            [wallet for wallet, _ in batch.changes],
            [lot for _, lot in batch.changes],
            [c.remaining for c in changes],
            [c.expired_at for c in changes],
            [c.last_position for c in changes],
        )
    await wallets_changed(conn, batch.wallets())


HANDLERS: dict[type, Handler[Batch]] = {
    LotsOpened: on_opened,
    GrantEvent: on_granted,
    CreditsAdjusted: on_adjusted,
    CreditsReserved: on_drawn,
    CreditsClawedBack: on_drawn,
    CreditsReleased: on_released,
    CreditsExpired: on_expired,
    CreditsHeld: on_drawn,  # a service's hold draws like a job's reserve
    CreditsUsed: on_drawn,
    HoldReleased: on_released,
}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
