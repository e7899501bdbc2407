"""Payments: the PRD's payments table (provider, type, amount, currency, status, ref).

Until Stripe's own payment events exist (issue 5), a payment is read from the ledger:
a top-up or subscription grant is a paid payment (provider "stripe" when it carries an
external reference, "manual" otherwise), and a clawback is a refund row that also
marks the payment with the same reference as refunded. Payment events will add
handlers here that fill amount, currency and failed statuses by the same reference.

Stripe payments (issue 5) are one row each, keyed by the payment key: their events
(`PaymentFact` and the reversals, months and reclaims that follow) open the row and move
its status; the wallet grants and clawbacks those commands make (metadata
`payment_flow`) add no payment row of their own, and a clawback row never overrides a
Stripe payment's status. A status only moves forward (pending, failed, paid or
rejected, partially refunded, refunded, disputed), whatever order events come in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from projections._wallets import WalletOwners, wallet_of
from rcc.domain.events import (
    CreditsClawedBack,
    Event,
    PaymentDisputed,
    PaymentFact,
    PaymentReclaimed,
    PaymentRefunded,
    SubscriptionGranted,
    SubscriptionMonthGranted,
    TopupGranted,
    WalletOpened,
)
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "payments"
TABLES = ("payments", "payment_wallets")


@dataclass
class Payment:
    id: int
    wallet_id: str
    provider: str
    type: str
    credits_rcc: int
    status: str
    external_ref: str | None
    detail: str | None
    created_at: datetime
    updated_at: datetime
    amount: int | None = None
    currency: str | None = None


@dataclass
class Batch:
    owners: WalletOwners = field(default_factory=lambda: WalletOwners("payment_wallets"))
    new: list[Payment] = field(default_factory=list)
    refunded: dict[str, datetime] = field(default_factory=dict)  # ref -> when, for older rows
    stripe: dict[str, list[tuple[RecordedEvent, Event]]] = field(default_factory=dict)


def _provider(ref: str | None, record: RecordedEvent) -> str:
    named = record.metadata.get("provider")
    if isinstance(named, str) and named:
        return named
    return "stripe" if ref else "manual"


def on_opened(batch: Batch, event: WalletOpened, record: RecordedEvent) -> None:
    batch.owners.note(event)


def _payment_flow(record: RecordedEvent) -> bool:
    """A ledger line made by a Stripe payment command: its payment row is the payment's."""
    return bool(record.metadata.get("payment_flow"))


def on_grant(
    batch: Batch, event: TopupGranted | SubscriptionGranted, record: RecordedEvent
) -> None:
    if _payment_flow(record):
        return
    kind, detail = (
        ("topup", event.pack) if isinstance(event, TopupGranted) else ("subscription", event.period)
    )
    batch.new.append(
        Payment(
            id=record.position,
            wallet_id=wallet_of(record.stream_id),
            provider=_provider(event.ref, record),
            type=kind,
            credits_rcc=event.amount,
            status="paid",
            external_ref=event.ref,
            detail=detail,
            created_at=record.recorded_at,
            updated_at=record.recorded_at,
        )
    )


def on_clawback(batch: Batch, event: CreditsClawedBack, record: RecordedEvent) -> None:
    at = record.recorded_at
    if event.ref and not _payment_flow(record):
        # Events come in (tx_id, position) order, and a concurrent transaction's
        # recorded_at can be earlier than an event before it: a row's updated_at is the
        # latest of its times (as the flush's GREATEST does for earlier batches'
        # rows), so where the batches happen to end does not change it.
        for payment in batch.new:
            if payment.external_ref == event.ref and payment.type != "clawback":
                payment.status, payment.updated_at = "refunded", max(payment.updated_at, at)
        batch.refunded[event.ref] = max(batch.refunded.get(event.ref, at), at)
    shortfall = f"shortfall {event.shortfall} RCC" if event.shortfall else None
    batch.new.append(
        Payment(
            id=record.position,
            wallet_id=wallet_of(record.stream_id),
            provider=_provider(event.ref, record),
            type="clawback",
            credits_rcc=-event.amount,
            status="refunded",
            external_ref=event.ref,
            detail=shortfall,
            created_at=at,
            updated_at=at,
        )
    )


def on_stripe(batch: Batch, event: Event, record: RecordedEvent) -> None:
    key = str(getattr(event, "payment_key", ""))
    batch.stripe.setdefault(key, []).append((record, event))


_RANK = {
    "": 0,
    "pending": 1,
    "held": 1,
    "failed": 2,
    "paid": 3,
    "rejected": 3,
    "partially_refunded": 4,
    "refunded": 5,
    "disputed": 6,
}
_FACT_STATUS = {
    "payment_pending": "pending",
    "payment_held": "held",
    "payment_succeeded": "paid",
    "payment_rejected": "rejected",
    "payment_failed": "failed",
}
_STRIPE_COLUMNS = (
    "id",
    "user_id",
    "wallet_id",
    "type",
    "amount",
    "currency",
    "credits_rcc",
    "status",
    "detail",
    "created_at",
    "updated_at",
    "credits_granted_rcc",
    "clawed_back_rcc",
    "shortfall_rcc",
    "refunded_amount",
)


def _day(epoch: int | None) -> str:
    return "" if epoch is None else datetime.fromtimestamp(epoch, UTC).date().isoformat()


def _describe(event: PaymentFact) -> str:
    if event.kind == "topup":
        what = f"pack {event.product}"
    else:
        what = f"plan {event.product}" + (f" ({event.interval})" if event.interval else "")
        if event.period_start is not None:
            what += f" {_day(event.period_start)}/{_day(event.period_end)}"
    reason = getattr(event, "reason", "")
    return f"{what}: {reason}" if reason else what


def _stripe_row(row: dict[str, Any] | None, event: Event, record: RecordedEvent) -> dict[str, Any]:
    """Fold one payment event into its row (values from the events only)."""
    if row is None:
        row = dict.fromkeys(_STRIPE_COLUMNS)
        row.update(
            id=record.position, wallet_id="", type="unknown", credits_rcc=0, status="",
            created_at=record.recorded_at, credits_granted_rcc=0, clawed_back_rcc=0,
            shortfall_rcc=0, refunded_amount=0,
        )  # fmt: skip
    row["updated_at"] = record.recorded_at
    status = row["status"]
    match event:
        case PaymentFact():
            row.update(
                type=event.kind or row["type"],
                amount=event.amount,
                currency=event.currency,
                credits_rcc=event.credits,
                detail=_describe(event),
                user_id=event.user_id or row["user_id"],
                wallet_id=event.wallet_id or row["wallet_id"],
            )
            status = _FACT_STATUS[str(type(event).__struct_config__.tag)]
        case SubscriptionMonthGranted():
            row["credits_granted_rcc"] += event.credits
        case PaymentReclaimed():
            row["clawed_back_rcc"] += event.clawed
            row["shortfall_rcc"] += event.shortfall
        case PaymentRefunded():
            row["refunded_amount"] = max(row["refunded_amount"], event.amount)
            status = "partially_refunded"
        case PaymentDisputed():
            status = "disputed"
    if isinstance(event, PaymentFact) and event.kind == "topup" and status == "paid":
        row["credits_granted_rcc"] = event.credits
    if _RANK[status] >= _RANK[row["status"]]:
        row["status"] = status
    if row["status"] in {"partially_refunded", "refunded"}:
        amount = row["amount"] or 0
        full = amount <= 0 or row["refunded_amount"] >= amount
        row["status"] = "refunded" if full else "partially_refunded"
    return row


async def _flush_stripe(conn: asyncpg.Connection, batch: Batch) -> None:
    """Fold this batch's Stripe payment events into their rows, in event order."""
    found = await conn.fetch(
        f"SELECT payment_key, {', '.join(_STRIPE_COLUMNS)} FROM payments"
        " WHERE payment_key = ANY($1::text[])",
        list(batch.stripe),
    )
    rows: dict[str, dict[str, Any]] = {
        r["payment_key"]: {c: r[c] for c in _STRIPE_COLUMNS} for r in found
    }
    for key, events in batch.stripe.items():
        row = rows.get(key)
        for record, event in events:
            row = _stripe_row(row, event, record)
        assert row is not None
        rows[key] = row
    keys = list(batch.stripe)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _STRIPE_COLUMNS[1:])
    await conn.execute(
        f"""INSERT INTO payments (payment_key, provider, external_ref, {", ".join(_STRIPE_COLUMNS)})
            SELECT k, 'stripe', k, {", ".join(_STRIPE_COLUMNS)} FROM unnest(
                $1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                $7::text[], $8::bigint[], $9::text[], $10::text[], $11::timestamptz[],
                $12::timestamptz[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[]
            ) AS r(k, {", ".join(_STRIPE_COLUMNS)})
            ON CONFLICT (id) DO UPDATE SET {updates}""",
        keys,
        *[[rows[k][c] for k in keys] for c in _STRIPE_COLUMNS],
    )


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    if batch.stripe:
        await _flush_stripe(conn, batch)
    await batch.owners.save(conn)
    if batch.refunded:  # rows of earlier batches; this batch's own were marked in memory
        await conn.execute(
            """UPDATE payments p SET status = 'refunded', updated_at = GREATEST(p.updated_at, r.at)
                 FROM unnest($1::text[], $2::timestamptz[]) AS r(ref, at)
                WHERE p.external_ref = r.ref AND p.type <> 'clawback'
                  AND p.payment_key IS NULL""",
            list(batch.refunded),
            list(batch.refunded.values()),
        )
    if not batch.new:
        return
    users = await batch.owners.user_ids(conn, {p.wallet_id for p in batch.new})
    rows = batch.new
    await conn.execute(
        """INSERT INTO payments (id, user_id, wallet_id, provider, type, amount, currency,
                                 credits_rcc, status, external_ref, detail, created_at,
                                 updated_at)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                $6::bigint[], $7::text[], $8::bigint[], $9::text[], $10::text[],
                                $11::text[], $12::timestamptz[], $13::timestamptz[])""",
        [p.id for p in rows],
        [users.get(p.wallet_id) for p in rows],
        [p.wallet_id for p in rows],
        [p.provider for p in rows],
        [p.type for p in rows],
        [p.amount for p in rows],
        [p.currency for p in rows],
        [p.credits_rcc for p in rows],
        [p.status for p in rows],
        [p.external_ref for p in rows],
        [p.detail for p in rows],
        [p.created_at for p in rows],
        [p.updated_at for p in rows],
    )


HANDLERS: dict[type, Handler[Batch]] = {
    WalletOpened: on_opened,
    TopupGranted: on_grant,
    SubscriptionGranted: on_grant,
    CreditsClawedBack: on_clawback,
    PaymentFact: on_stripe,
    SubscriptionMonthGranted: on_stripe,
    PaymentRefunded: on_stripe,
    PaymentDisputed: on_stripe,
    PaymentReclaimed: on_stripe,
}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
