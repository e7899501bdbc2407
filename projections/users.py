"""Users: email, admin flag, balance, plan, created and last activity, plus running totals.

Balance and activity are sums and maxima, folded per batch. The admin flag follows the
highest user-stream version. `user_totals` counts users, admins and users with a
positive balance, so the dashboard never counts rows. The plan is the last
subscription grant's (`plan` in the command metadata, else "subscription"), active for
PLAN_GRACE after each grant; issue 5's plan events will set it exactly.

Stripe payments (issue 5) set the plan exactly: a paid plan period makes the plan active
until the period's end, the subscription's end cuts it there (only if that subscription
is the one that set it). A failed or refused payment flags the user (`payment_issue`)
until a payment succeeds. These apply in event order, after the rest of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from projections._wallets import wallet_of
from rcc.domain.events import (
    AdminStatusChanged,
    JobCreated,
    LedgerEvent,
    PaymentFailed,
    PaymentRejected,
    PaymentSucceeded,
    SignInAttempted,
    SubscriptionEnded,
    SubscriptionGranted,
    UserRegistered,
)
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "users"
TABLES = ("users", "user_totals")
PLAN_GRACE = timedelta(days=31)


@dataclass
class Admin:
    is_admin: bool
    version: int


@dataclass
class WalletChange:
    delta: int = 0
    last_at: datetime | None = None
    plan: str | None = None
    plan_until: datetime | None = None


@dataclass
class Batch:
    new: dict[str, UserRegistered] = field(default_factory=dict)
    created_at: dict[str, datetime] = field(default_factory=dict)
    admin: dict[str, Admin] = field(default_factory=dict)
    wallets: dict[str, WalletChange] = field(default_factory=dict)
    activity: dict[str, datetime] = field(default_factory=dict)
    payments: dict[str, list[tuple[RecordedEvent, object]]] = field(default_factory=dict)

    def active(self, user_id: str, at: datetime) -> None:
        seen = self.activity.get(user_id)
        self.activity[user_id] = at if seen is None else max(seen, at)

    def set_admin(self, user_id: str, is_admin: bool, version: int) -> None:
        known = self.admin.get(user_id)
        if known is None or version > known.version:
            self.admin[user_id] = Admin(is_admin, version)


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None else max(a, b)


def on_registered(batch: Batch, event: UserRegistered, record: RecordedEvent) -> None:
    batch.new[event.user_id] = event
    batch.created_at[event.user_id] = record.recorded_at
    batch.set_admin(event.user_id, event.is_admin, record.version)
    batch.active(event.user_id, record.recorded_at)


def on_admin(batch: Batch, event: AdminStatusChanged, record: RecordedEvent) -> None:
    batch.set_admin(event.user_id, event.is_admin, record.version)


def on_ledger(batch: Batch, event: LedgerEvent, record: RecordedEvent) -> None:
    change = batch.wallets.setdefault(wallet_of(record.stream_id), WalletChange())
    change.delta += event.delta
    change.last_at = _later(change.last_at, record.recorded_at)
    if isinstance(event, SubscriptionGranted) and not record.metadata.get("payment_flow"):
        plan = record.metadata.get("plan")
        change.plan = plan if isinstance(plan, str) and plan else "subscription"
        change.plan_until = _later(change.plan_until, record.recorded_at + PLAN_GRACE)


def on_job_created(batch: Batch, event: JobCreated, record: RecordedEvent) -> None:
    batch.active(event.user_id, record.recorded_at)


def on_sign_in(batch: Batch, event: SignInAttempted, record: RecordedEvent) -> None:
    if event.user_id and event.outcome == "admitted":
        batch.active(event.user_id, record.recorded_at)


def on_payment(
    batch: Batch,
    event: PaymentSucceeded | PaymentFailed | PaymentRejected | SubscriptionEnded,
    record: RecordedEvent,
) -> None:
    if event.user_id:
        batch.payments.setdefault(event.user_id, []).append((record, event))


def _epoch(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


async def _flush_payments(conn: asyncpg.Connection, batch: Batch) -> None:
    """Plans and payment flags, folded in event order over the stored values."""
    found = {
        r["id"]: dict(r)
        for r in await conn.fetch(
            """SELECT id, plan, plan_active_until, subscription_id, payment_issue,
                      payment_issue_at FROM users WHERE id = ANY($1::text[])""",
            list(batch.payments),
        )
    }
    for user_id, events in batch.payments.items():
        row = found.get(user_id)
        if row is None:
            continue
        for record, event in events:
            match event:
                case PaymentSucceeded():
                    row["payment_issue"] = row["payment_issue_at"] = None
                    if event.kind == "subscription":
                        row["plan"], row["subscription_id"] = event.product, event.subscription_id
                        if event.period_end is not None:
                            end = _epoch(event.period_end)
                            until = row["plan_active_until"]
                            row["plan_active_until"] = end if until is None else max(until, end)
                case PaymentFailed() | PaymentRejected():
                    row["payment_issue"] = f"payment {event.payment_key}: {event.reason}"
                    row["payment_issue_at"] = record.recorded_at
                case SubscriptionEnded():
                    until = row["plan_active_until"]
                    if row["subscription_id"] == event.subscription_id and until is not None:
                        row["plan_active_until"] = min(until, _epoch(event.ended_at))
    rows = list(found.values())
    if rows:
        await conn.execute(
            """UPDATE users u SET plan = r.plan, plan_active_until = r.until,
                      subscription_id = r.sub, payment_issue = r.issue,
                      payment_issue_at = r.issue_at
                 FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[],
                             $6::timestamptz[]) AS r(id, plan, until, sub, issue, issue_at)
                WHERE u.id = r.id""",
            *[[row[c] for row in rows] for c in (
                "id", "plan", "plan_active_until", "subscription_id", "payment_issue",
                "payment_issue_at",
            )],
        )  # fmt: skip


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    users = admins = with_balance = 0
    if batch.new:
        users, admins, with_balance = await _insert_new(conn, batch)
    if batch.wallets:
        with_balance += await _update_wallets(conn, batch.wallets)
    if batch.admin:
        admins += await _update_admin(conn, batch.admin)
    if batch.activity:
        await conn.execute(
            """UPDATE users u SET last_activity_at = GREATEST(u.last_activity_at, a.at)
                 FROM unnest($1::text[], $2::timestamptz[]) AS a(id, at) WHERE u.id = a.id""",
            list(batch.activity),
            list(batch.activity.values()),
        )
    if users or admins or with_balance:
        await conn.execute(
            """INSERT INTO user_totals (id, users, admins, with_balance) VALUES (1, $1, $2, $3)
               ON CONFLICT (id) DO UPDATE
                  SET users = user_totals.users + excluded.users,
                      admins = user_totals.admins + excluded.admins,
                      with_balance = user_totals.with_balance + excluded.with_balance""",
            users,
            admins,
            with_balance,
        )
    if batch.payments:
        await _flush_payments(conn, batch)


async def _insert_new(conn: asyncpg.Connection, batch: Batch) -> tuple[int, int, int]:
    """Insert this batch's new users with everything the batch knows of them."""
    rows = []
    for user_id, event in batch.new.items():
        wallet = batch.wallets.pop(event.wallet_id, WalletChange())
        admin = batch.admin.pop(user_id)
        last = batch.activity.pop(user_id)
        if wallet.last_at is not None:
            last = max(last, wallet.last_at)
        rows.append(
            (
                user_id,
                event.email,
                event.wallet_id,
                admin.is_admin,
                wallet.delta,
                wallet.plan,
                wallet.plan_until,
                batch.created_at[user_id],
                last,
                admin.version,
            )
        )
    await conn.execute(
        """INSERT INTO users (id, email, wallet_id, is_admin, balance, plan, plan_active_until,
                              created_at, last_activity_at, version)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bigint[],
                                $6::text[], $7::timestamptz[], $8::timestamptz[],
                                $9::timestamptz[], $10::bigint[])""",
        *[list(column) for column in zip(*rows, strict=True)],
    )
    return len(rows), sum(r[3] for r in rows), sum(r[4] > 0 for r in rows)


async def _update_wallets(conn: asyncpg.Connection, wallets: dict[str, WalletChange]) -> int:
    """Apply balance deltas; return the change in users with a positive balance."""
    rows = await conn.fetch(
        """UPDATE users u
              SET balance = u.balance + w.delta,
                  last_activity_at = GREATEST(u.last_activity_at, w.last_at),
                  plan = COALESCE(w.plan, u.plan),
                  plan_active_until = GREATEST(u.plan_active_until, w.plan_until)
             FROM unnest($1::text[], $2::bigint[], $3::timestamptz[], $4::text[],
                         $5::timestamptz[]) AS w(wallet_id, delta, last_at, plan, plan_until)
            WHERE u.wallet_id = w.wallet_id
        RETURNING u.balance - w.delta AS before, u.balance AS after""",
        list(wallets),
        [w.delta for w in wallets.values()],
        [w.last_at for w in wallets.values()],
        [w.plan for w in wallets.values()],
        [w.plan_until for w in wallets.values()],
    )
    return sum((r["after"] > 0) - (r["before"] > 0) for r in rows)


async def _update_admin(conn: asyncpg.Connection, changes: dict[str, Admin]) -> int:
    """Apply admin flags newer than the stored ones; return the change in admins."""
    rows = await conn.fetch(
        """WITH old AS (SELECT id, is_admin FROM users WHERE id = ANY($1::text[]) FOR UPDATE)
           UPDATE users u SET is_admin = a.is_admin, version = a.version
             FROM unnest($1::text[], $2::bool[], $3::bigint[]) AS a(id, is_admin, version), old
            WHERE u.id = a.id AND old.id = a.id AND a.version > u.version
        RETURNING old.is_admin AS before, u.is_admin AS after""",
        list(changes),
        [a.is_admin for a in changes.values()],
        [a.version for a in changes.values()],
    )
    return sum(int(r["after"]) - int(r["before"]) for r in rows)


HANDLERS: dict[type, Handler[Batch]] = {
    UserRegistered: on_registered,
    AdminStatusChanged: on_admin,
    LedgerEvent: on_ledger,
    JobCreated: on_job_created,
    SignInAttempted: on_sign_in,
    PaymentSucceeded: on_payment,
    PaymentFailed: on_payment,
    PaymentRejected: on_payment,
    SubscriptionEnded: on_payment,
}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
