"""The ledger: the PRD's rcc_ledger, one line per ledger event of a wallet.

The line's id is the event's global position, so a replay gives every line the same
id again. Lines are only ever inserted: the checkpoint guarantees each event once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from projections._wallets import WalletOwners, wallet_of
from projections.ledger_holds import hold_note, service_of
from rcc.domain.events import (
    CreditsAdjusted,
    CreditsClawedBack,
    CreditsExpired,
    CreditsReleased,
    CreditsRolledOver,
    LedgerEvent,
    SubscriptionLotSuperseded,
    WalletOpened,
)
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "ledger"
TABLES = ("rcc_ledger", "ledger_wallets")


@dataclass
class Batch:
    owners: WalletOwners = field(default_factory=lambda: WalletOwners("ledger_wallets"))
    lines: list[tuple[RecordedEvent, LedgerEvent]] = field(default_factory=list)


def on_opened(batch: Batch, event: WalletOpened, record: RecordedEvent) -> None:
    batch.owners.note(event)


def on_ledger(batch: Batch, event: LedgerEvent, record: RecordedEvent) -> None:
    batch.lines.append((record, event))


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    await batch.owners.save(conn)
    if not batch.lines:
        return
    users = await batch.owners.user_ids(conn, {wallet_of(r.stream_id) for r, _ in batch.lines})
    columns: list[list[object]] = [[] for _ in range(10)]
    for record, event in batch.lines:
        wallet_id = wallet_of(record.stream_id)
        adjusted = event if isinstance(event, CreditsAdjusted) else None
        row = (
            record.position,
            wallet_id,
            users.get(wallet_id),
            event.delta,
            event.reason,
            event.job_id,
            event.external_ref,
            adjusted.actor if adjusted else service_of(event),
            adjusted.note if adjusted else hold_note(event) or _note(event),
            record.recorded_at,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    await conn.execute(
        """INSERT INTO rcc_ledger (id, wallet_id, user_id, delta, reason, job_id, external_ref,
                                   actor, note, created_at)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                                $6::text[], $7::text[], $8::text[], $9::text[],
                                $10::timestamptz[])""",
        *columns,
    )


def _note(event: LedgerEvent) -> str | None:
    """What a line says beyond its reason: which lot expired, that a release came back
    as a new lot because the lot it was drawn from expired meanwhile, or which lots a
    clawback took from (the refunded payment's own first)."""
    match event:
        case SubscriptionLotSuperseded():
            kept = f"; part rolled over as lot {event.rolled_over}" if event.rolled_over else ""
            return f"lot {event.lot} ended: the next month's credits were granted{kept}"
        case CreditsRolledOver():
            return f"rolled over from lot {', '.join(event.from_lots)} for one more month"
        case CreditsExpired():
            return f"lot {event.lot} expired"
        case CreditsReleased() if event.relot is not None:
            until = event.relot_expires_at
            if until is None:
                return f"returned as new lot {event.relot}: reserved before lots existed"
            return (
                f"returned as new lot {event.relot} until {until:%Y-%m-%d %H:%M} UTC: "
                "the lot it was drawn from expired"
            )
        case CreditsClawedBack() if event.draws:
            taken = ", ".join(f"{lot} ({amount})" for lot, amount in event.draws)
            return (
                f"taken from lot {taken}" if len(event.draws) == 1 else f"taken from lots {taken}"
            )
    return None


HANDLERS: dict[type, Handler[Batch]] = {WalletOpened: on_opened, LedgerEvent: on_ledger}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
