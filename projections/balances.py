"""Wallet balances: balance, lifetime granted and consumed, jobs in flight, last position.

Every column is a sum or a max, so a batch folds into one delta per wallet and lands
with two statements. Jobs in flight count jobs created and not yet ended; job events
name only the job, so the wallet of each open job is kept in `wallet_open_jobs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from projections._wallets import wallet_of
from projections.read_notify import wallets_changed
from rcc.domain.events import (
    CreditsAdjusted,
    CreditsClawedBack,
    CreditsHeld,
    CreditsReleased,
    CreditsReserved,
    CreditsUsed,
    HoldReleased,
    JobCancelled,
    JobCreated,
    JobFailed,
    JobSucceeded,
    LedgerEvent,
    SignupGranted,
    SubscriptionGranted,
    TopupGranted,
    WalletOpened,
)
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "balances"
TABLES = ("wallet_balances", "wallet_open_jobs")


@dataclass
class WalletDelta:
    owner: tuple[str, str] | None = None  # set when the wallet was opened in this batch
    balance: int = 0
    granted: int = 0
    consumed: int = 0
    adjusted: int = 0
    clawed_back: int = 0
    in_flight: int = 0
    last_position: int = 0
    updated_at: datetime | None = None

    def touch(self, position: int, at: datetime) -> None:
        self.last_position = max(self.last_position, position)
        self.updated_at = at if self.updated_at is None else max(self.updated_at, at)


@dataclass
class Batch:
    wallets: dict[str, WalletDelta] = field(default_factory=dict)
    opened_jobs: dict[str, str] = field(default_factory=dict)  # job -> wallet
    ended_jobs: dict[str, tuple[int, datetime]] = field(default_factory=dict)

    def wallet(self, wallet_id: str, record: RecordedEvent) -> WalletDelta:
        delta = self.wallets.setdefault(wallet_id, WalletDelta())
        delta.touch(record.position, record.recorded_at)
        return delta


def on_opened(batch: Batch, event: WalletOpened, record: RecordedEvent) -> None:
    batch.wallet(event.wallet_id, record).owner = (event.owner_kind, event.owner_id)


def on_ledger(batch: Batch, event: LedgerEvent, record: RecordedEvent) -> None:
    delta = batch.wallet(wallet_of(record.stream_id), record)
    delta.balance += event.delta
    match event:
        case SignupGranted() | TopupGranted() | SubscriptionGranted():
            delta.granted += event.amount
        case CreditsReserved():
            delta.consumed += event.amount
        case CreditsReleased():
            delta.consumed -= event.amount
        case CreditsHeld() | CreditsUsed():  # service holds and usage (h1)
            delta.consumed += event.amount
        case HoldReleased():
            delta.consumed -= event.amount
        case CreditsAdjusted():
            delta.adjusted += event.amount
        case CreditsClawedBack():
            delta.clawed_back += event.amount


def on_job_created(batch: Batch, event: JobCreated, record: RecordedEvent) -> None:
    batch.opened_jobs[event.job_id] = event.wallet_id
    batch.wallet(event.wallet_id, record).in_flight += 1


def on_job_ended(
    batch: Batch, event: JobSucceeded | JobFailed | JobCancelled, record: RecordedEvent
) -> None:
    wallet_id = batch.opened_jobs.pop(event.job_id, None)
    if wallet_id is None:
        batch.ended_jobs[event.job_id] = (record.position, record.recorded_at)
    else:
        batch.wallet(wallet_id, record).in_flight -= 1


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    if batch.ended_jobs:
        rows = await conn.fetch(
            """DELETE FROM wallet_open_jobs WHERE job_id = ANY($1::text[])
               RETURNING job_id, wallet_id""",
            list(batch.ended_jobs),
        )
        for row in rows:
            position, at = batch.ended_jobs[row["job_id"]]
            delta = batch.wallets.setdefault(row["wallet_id"], WalletDelta())
            delta.touch(position, at)
            delta.in_flight -= 1
    if batch.opened_jobs:
        await conn.execute(
            "INSERT INTO wallet_open_jobs SELECT * FROM unnest($1::text[], $2::text[])",
            list(batch.opened_jobs),
            list(batch.opened_jobs.values()),
        )
    new = {w: d for w, d in batch.wallets.items() if d.owner is not None}
    old = {w: d for w, d in batch.wallets.items() if d.owner is None}
    if new:
        await conn.execute(
            """INSERT INTO wallet_balances
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[],
                                    $5::bigint[], $6::bigint[], $7::bigint[], $8::bigint[],
                                    $9::int[], $10::bigint[], $11::timestamptz[])""",
            list(new),
            [d.owner[0] for d in new.values() if d.owner],
            [d.owner[1] for d in new.values() if d.owner],
            *_columns(new.values()),
        )
    if old:
        await conn.execute(
            """UPDATE wallet_balances b
                  SET balance = b.balance + d.balance,
                      lifetime_granted = b.lifetime_granted + d.granted,
                      lifetime_consumed = b.lifetime_consumed + d.consumed,
                      lifetime_adjusted = b.lifetime_adjusted + d.adjusted,
                      lifetime_clawed_back = b.lifetime_clawed_back + d.clawed_back,
                      jobs_in_flight = b.jobs_in_flight + d.in_flight,
                      last_position = GREATEST(b.last_position, d.last_position),
                      updated_at = GREATEST(b.updated_at, d.updated_at)
                 FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                             $6::bigint[], $7::int[], $8::bigint[], $9::timestamptz[])
                      AS d(wallet_id, balance, granted, consumed, adjusted, clawed_back,
                           in_flight, last_position, updated_at)
                WHERE b.wallet_id = d.wallet_id""",
            list(old),
            *_columns(old.values()),
        )
    await wallets_changed(conn, batch.wallets)


def _columns(deltas: Iterable[WalletDelta]) -> list[list[object]]:
    rows = list(deltas)
    return [
        [d.balance for d in rows],
        [d.granted for d in rows],
        [d.consumed for d in rows],
        [d.adjusted for d in rows],
        [d.clawed_back for d in rows],
        [d.in_flight for d in rows],
        [d.last_position for d in rows],
        [d.updated_at for d in rows],
    ]


HANDLERS: dict[type, Handler[Batch]] = {
    WalletOpened: on_opened,
    LedgerEvent: on_ledger,
    JobCreated: on_job_created,
    JobSucceeded: on_job_ended,
    JobFailed: on_job_ended,
    JobCancelled: on_job_ended,
}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
