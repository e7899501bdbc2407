"""Dashboard counters (PRD §15): per metric and UTC hour, plus running totals.

Every counter is a sum, so a batch folds into one increment per (metric, hour) and
lands with one upsert. The queries roll hours up to days and weeks, reading
O(hours in the window) rows. A metric is just a name: later events (payment failures,
installed models) add handlers that count under new names, with no migration.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from rcc.domain.events import (
    CreditsAdjusted,
    CreditsClawedBack,
    CreditsReleased,
    CreditsReserved,
    JobCancelled,
    JobCreated,
    JobFailed,
    JobSucceeded,
    ModelDeleted,
    ModelInstalled,
    PaymentFailed,
    PaymentRejected,
    PaymentSucceeded,
    SignInAttempted,
    SignupGranted,
    SubscriptionGranted,
    TopupGranted,
    UserRegistered,
)
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "dashboard"
TABLES = ("dashboard_hourly", "dashboard_totals")


def hour_of(at: datetime) -> datetime:
    """The UTC hour an event counts in."""
    return at.replace(minute=0, second=0, microsecond=0)


@dataclass
class Batch:
    hourly: Counter[tuple[str, datetime]] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)

    def count(self, metric: str, record: RecordedEvent, value: int = 1) -> None:
        self.hourly[(metric, hour_of(record.recorded_at))] += value


def on_registered(batch: Batch, event: UserRegistered, record: RecordedEvent) -> None:
    batch.count("users_registered", record)
    batch.totals["users"] += 1


def on_job_created(batch: Batch, event: JobCreated, record: RecordedEvent) -> None:
    batch.count("jobs_created", record)
    batch.count(f"jobs_created:{event.job_type}", record)
    batch.totals["jobs"] += 1


def on_job_succeeded(batch: Batch, event: JobSucceeded, record: RecordedEvent) -> None:
    batch.count("jobs_succeeded", record)


def on_job_failed(batch: Batch, event: JobFailed, record: RecordedEvent) -> None:
    batch.count("jobs_failed", record)


def on_job_cancelled(batch: Batch, event: JobCancelled, record: RecordedEvent) -> None:
    batch.count("jobs_cancelled", record)


def on_reserved(batch: Batch, event: CreditsReserved, record: RecordedEvent) -> None:
    batch.count("rcc_reserved", record, event.amount)


def on_released(batch: Batch, event: CreditsReleased, record: RecordedEvent) -> None:
    batch.count("rcc_released", record, event.amount)


def on_granted(
    batch: Batch, event: SignupGranted | TopupGranted | SubscriptionGranted, record: RecordedEvent
) -> None:
    batch.count("rcc_granted", record, event.amount)
    if not isinstance(event, SignupGranted) and not record.metadata.get("payment_flow"):
        batch.count("payments", record)  # a Stripe payment counts once, by its own event


def on_payment(batch: Batch, event: PaymentSucceeded, record: RecordedEvent) -> None:
    batch.count("payments", record)


def on_payment_error(
    batch: Batch, event: PaymentFailed | PaymentRejected, record: RecordedEvent
) -> None:
    batch.count("payment_errors", record)


def on_adjusted(batch: Batch, event: CreditsAdjusted, record: RecordedEvent) -> None:
    batch.count("rcc_adjusted", record, event.amount)


def on_clawed_back(batch: Batch, event: CreditsClawedBack, record: RecordedEvent) -> None:
    batch.count("rcc_clawed_back", record, event.amount)
    batch.count("refunds", record)


def on_sign_in(batch: Batch, event: SignInAttempted, record: RecordedEvent) -> None:
    batch.count(f"sign_ins_{event.outcome}", record)


def on_model_installed(batch: Batch, event: ModelInstalled, record: RecordedEvent) -> None:
    batch.count("models_installed", record)
    if not event.replaced:
        batch.totals["models_installed"] += 1


def on_model_deleted(batch: Batch, event: ModelDeleted, record: RecordedEvent) -> None:
    if event.was_installed:
        batch.totals["models_installed"] -= 1


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    if batch.hourly:
        await conn.execute(
            """INSERT INTO dashboard_hourly (metric, hour, value)
               SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::bigint[])
               ON CONFLICT (metric, hour)
               DO UPDATE SET value = dashboard_hourly.value + excluded.value""",
            [metric for metric, _ in batch.hourly],
            [hour for _, hour in batch.hourly],
            list(batch.hourly.values()),
        )
    if batch.totals:
        await conn.execute(
            """INSERT INTO dashboard_totals (metric, value)
               SELECT * FROM unnest($1::text[], $2::bigint[])
               ON CONFLICT (metric)
               DO UPDATE SET value = dashboard_totals.value + excluded.value""",
            list(batch.totals),
            list(batch.totals.values()),
        )


HANDLERS: dict[type, Handler[Batch]] = {
    UserRegistered: on_registered,
    JobCreated: on_job_created,
    JobSucceeded: on_job_succeeded,
    JobFailed: on_job_failed,
    JobCancelled: on_job_cancelled,
    CreditsReserved: on_reserved,
    CreditsReleased: on_released,
    SignupGranted: on_granted,
    TopupGranted: on_granted,
    SubscriptionGranted: on_granted,
    CreditsAdjusted: on_adjusted,
    CreditsClawedBack: on_clawed_back,
    SignInAttempted: on_sign_in,
    PaymentSucceeded: on_payment,
    PaymentFailed: on_payment_error,
    PaymentRejected: on_payment_error,
    ModelInstalled: on_model_installed,
    ModelDeleted: on_model_deleted,
}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
