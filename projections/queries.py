"""The reads the portal makes. Every list is a keyset page over an index; the
dashboard reads hourly counters, so no query here grows with the number of events."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from projections.paging import Where, page
from projections.views import (
    BalanceView,
    Dashboard,
    DayValue,
    JobView,
    LedgerEntry,
    LogEntry,
    Page,
    PaymentView,
    UserView,
)

_USER = """SELECT id, email, is_admin, balance AS balance_rcc, plan, plan_active_until,
                  created_at, last_activity_at, wallet_id, payment_issue, payment_issue_at
             FROM users"""
# A job is a hold (docs/HOLDS.md): `held_rcc` while it is open, `charged_rcc` once it
# succeeded (its price less what a capture below the hold returned as JOB_RELEASE).
_JOB = """SELECT id, user_id, type, cost_rcc, status, duration_ms, output_uris, error, metadata,
                 created_at, started_at, ended_at, queued_at, bypass, backend, prompt_id,
                 CASE WHEN NOT bypass AND status IN ('created', 'queued', 'running')
                      THEN cost_rcc ELSE 0 END AS held_rcc,
                 CASE WHEN bypass OR status <> 'succeeded' THEN 0
                      ELSE cost_rcc - coalesce((SELECT sum(l.delta) FROM rcc_ledger l
                                                 WHERE l.job_id = jobs.id
                                                   AND l.reason = 'JOB_RELEASE'), 0)
                 END::bigint AS charged_rcc
            FROM jobs"""
_LEDGER = """SELECT id, user_id, delta, reason, job_id, external_ref, created_at, wallet_id,
                    actor, note FROM rcc_ledger"""
_PAYMENT = """SELECT id, user_id, provider, type, amount, currency, credits_rcc, status,
                     external_ref, detail, created_at, updated_at, credits_granted_rcc,
                     clawed_back_rcc, shortfall_rcc, refunded_amount FROM payments"""
_LOG = "SELECT id, at, user_id, actor, ip, action, status, detail FROM ops_log"


async def user(conn: asyncpg.Connection, user_id: str) -> UserView | None:
    """One user's profile and balance (GET /me)."""
    row = await conn.fetchrow(f"{_USER} WHERE id = $1", user_id)
    return msgspec.convert(dict(row), UserView) if row else None


async def balance(conn: asyncpg.Connection, wallet_id: str) -> BalanceView | None:
    """One wallet's balance and lifetime figures."""
    row = await conn.fetchrow(
        "SELECT *, balance AS balance_rcc FROM wallet_balances WHERE wallet_id = $1", wallet_id
    )
    return msgspec.convert(dict(row), BalanceView) if row else None


async def job(conn: asyncpg.Connection, job_id: str, user_id: str | None = None) -> JobView | None:
    """One job; with `user_id`, only if it is that user's (someone else's job is absent)."""
    where = Where().add("id = {0}", job_id).when(user_id, "user_id = {0}")
    row = await conn.fetchrow(f"{_JOB} WHERE {where.sql()}", *where.params)
    return job_view(row) if row else None


def job_view(row: Mapping[str, Any]) -> JobView:
    """The one way a job is shown, from a `jobs` row (or the same columns in a dict)."""
    return msgspec.convert(dict(row), JobView)


async def ledger_page(
    conn: asyncpg.Connection,
    user_id: str,
    *,
    reason: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    job_id: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[LedgerEntry]:
    """A user's ledger lines, newest first; filters: reason, [since, until), job."""
    where = (
        Where()
        .add("user_id = {0}", user_id)
        .when(reason, "reason = {0}")
        .when(since, "created_at >= {0}")
        .when(until, "created_at < {0}")
        .when(job_id, "job_id = {0}")
    )
    return await ledger_lines_page(conn, where, cursor=cursor, limit=limit)


async def ledger_lines_page(
    conn: asyncpg.Connection, where: Where, *, cursor: str | None, limit: int
) -> Page[LedgerEntry]:
    """Ledger lines matching `where`, newest first: the one ledger page query (a user's
    ledger, an organisation's)."""
    return await page(
        conn,
        select=_LEDGER,
        where=where,
        time_column="created_at",
        cursor=cursor,
        limit=limit,
        build=lambda r: msgspec.convert(dict(r), LedgerEntry),
    )


async def jobs_page(
    conn: asyncpg.Connection,
    *,
    user_id: str | None = None,
    wallet_id: str | None = None,
    status: str | None = None,
    type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[JobView]:
    """Jobs newest first (one user's, or everyone's for admins); filters: the wallet
    charged (an organisation's), status, type, time."""
    where = (
        Where()
        .when(user_id, "user_id = {0}")
        .when(wallet_id, "wallet_id = {0}")
        .when(status, "status = {0}")
        .when(type, "type = {0}")
        .when(since, "created_at >= {0}")
        .when(until, "created_at < {0}")
    )
    return await page(
        conn,
        select=_JOB,
        where=where,
        time_column="created_at",
        cursor=cursor,
        limit=limit,
        build=job_view,
        id_type=str,
    )


async def users_page(
    conn: asyncpg.Connection,
    *,
    email: str | None = None,
    is_admin: bool | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[UserView]:
    """Users newest first; `email` matches a prefix of the address (case-insensitive)."""
    prefix = None if email is None else _like_prefix(email.strip().lower())
    where = Where().when(prefix, "email LIKE {0}").when(is_admin, "is_admin = {0}")
    return await page(
        conn,
        select=_USER,
        where=where,
        time_column="created_at",
        cursor=cursor,
        limit=limit,
        build=lambda r: msgspec.convert(dict(r), UserView),
        id_type=str,
    )


async def payments_page(
    conn: asyncpg.Connection,
    *,
    user_id: str | None = None,
    status: str | None = None,
    type: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[PaymentView]:
    """Payments newest first; filters: user, status, type (topup, subscription, clawback)."""
    where = (
        Where().when(user_id, "user_id = {0}").when(status, "status = {0}").when(type, "type = {0}")
    )
    return await page(
        conn,
        select=_PAYMENT,
        where=where,
        time_column="created_at",
        cursor=cursor,
        limit=limit,
        build=lambda r: msgspec.convert(dict(r), PaymentView),
    )


async def logs_page(
    conn: asyncpg.Connection,
    *,
    user_id: str | None = None,
    action: str | None = None,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> Page[LogEntry]:
    """The operations log newest first; filters: user, action, status, [since, until)."""
    where = (
        Where()
        .when(user_id, "user_id = {0}")
        .when(action, "action = {0}")
        .when(status, "status = {0}")
        .when(since, "at >= {0}")
        .when(until, "at < {0}")
    )
    return await page(
        conn,
        select=_LOG,
        where=where,
        time_column="at",
        cursor=cursor,
        limit=limit,
        build=lambda r: msgspec.convert(dict(r), LogEntry),
    )


def _like_prefix(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


_WINDOW_METRICS = [
    "jobs_created",
    "jobs_failed",
    "rcc_reserved",
    "rcc_released",
    "payments",
    "payment_errors",
    "sign_ins_refused",
]


async def dashboard(
    conn: asyncpg.Connection, *, days: int = 30, weeks: int = 8, now: datetime | None = None
) -> Dashboard:
    """The admin dashboard: windows of 24 hours (this hour and the 23 before) and 7 days,
    per-day and per-week series, and totals. Reads O(hours in the window) rows."""
    now = now or datetime.now(UTC)
    hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    day_24h, day_7d = hour - timedelta(hours=23), hour - timedelta(hours=24 * 7 - 1)
    today = hour.date()
    first_week = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    first_day = min(today - timedelta(days=days - 1), first_week)
    windows = {
        r["metric"]: (int(r["d1"] or 0), int(r["d7"] or 0))
        for r in await conn.fetch(
            """SELECT metric, sum(value) FILTER (WHERE hour >= $2) AS d1, sum(value) AS d7
                 FROM dashboard_hourly WHERE metric = ANY($1::text[]) AND hour >= $3
                GROUP BY metric""",
            _WINDOW_METRICS,
            day_24h,
            day_7d,
        )
    }
    daily: dict[str, dict[date, int]] = defaultdict(dict)
    for r in await conn.fetch(
        """SELECT metric, (hour AT TIME ZONE 'UTC')::date AS day, sum(value) AS value
             FROM dashboard_hourly
            WHERE metric = ANY($1::text[]) AND hour >= $2
            GROUP BY 1, 2""",
        ["jobs_created", "rcc_reserved", "rcc_released"],
        datetime.combine(first_day, datetime.min.time(), UTC),
    ):
        daily[r["metric"]][r["day"]] = int(r["value"])
    totals = await conn.fetchrow(
        """SELECT t.users, t.admins,
                  t.with_balance + (SELECT count(*) FROM users
                                     WHERE plan_active_until > $1 AND balance <= 0) AS active,
                  (SELECT count(*) FROM jobs WHERE status IN ('created', 'queued', 'running'))
                      AS in_flight,
                  (SELECT value FROM dashboard_totals WHERE metric = 'models_installed')
                      AS models
             FROM (SELECT COALESCE(max(users), 0) AS users, COALESCE(max(admins), 0) AS admins,
                          COALESCE(max(with_balance), 0) AS with_balance FROM user_totals) t""",
        now,
    )

    def window(metric: str) -> tuple[int, int]:
        return windows.get(metric, (0, 0))

    debited = {
        d: daily["rcc_reserved"].get(d, 0) - daily["rcc_released"].get(d, 0)
        for d in _days(first_day, today)
    }
    per_week: dict[date, int] = defaultdict(int)
    for d, value in debited.items():
        if d >= first_week:
            per_week[d - timedelta(days=d.weekday())] += value
    recent = list(_days(today - timedelta(days=days - 1), today))
    reserved, released = window("rcc_reserved"), window("rcc_released")
    return Dashboard(
        total_users=int(totals["users"]),
        active_users=int(totals["active"]),
        admins=int(totals["admins"]),
        jobs_24h=window("jobs_created")[0],
        jobs_7d=window("jobs_created")[1],
        jobs_in_flight=int(totals["in_flight"]),
        job_errors_24h=window("jobs_failed")[0],
        job_errors_7d=window("jobs_failed")[1],
        rcc_debited_24h=reserved[0] - released[0],
        rcc_debited_7d=reserved[1] - released[1],
        rcc_debited_per_day=[DayValue(d, debited[d]) for d in recent],
        rcc_debited_per_week=[DayValue(w, per_week.get(w, 0)) for w in _weeks(first_week, weeks)],
        jobs_per_day=[DayValue(d, daily["jobs_created"].get(d, 0)) for d in recent],
        payments_7d=window("payments")[1],
        payment_errors_7d=window("payment_errors")[1],
        sign_ins_refused_24h=window("sign_ins_refused")[0],
        models_installed=int(totals["models"] or 0),
    )


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _weeks(first_monday: date, weeks: int) -> list[date]:
    return [first_monday + timedelta(weeks=i) for i in range(weeks)]
