"""The few reads pages need beyond projections.queries: the header's account line and
the per-day series behind the charts. Each reads an index range or hourly counters,
never a table scan."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import asyncpg
import msgspec


class Account(msgspec.Struct, frozen=True, kw_only=True):
    email: str
    balance_rcc: int
    plan: str | None
    blocked_reason: str | None = None  # h6: set while an admin has blocked the account


async def account(conn: asyncpg.Connection, user_id: str) -> Account:
    """Email and balance from the user's and wallet's stream heads (what GET /me reads:
    updated by every command in its own transaction), and the active plan."""
    row = await conn.fetchrow(
        """SELECT (SELECT state->>'email' FROM streams WHERE stream_id = $1) AS email,
                  (SELECT (state->>'balance')::bigint FROM streams WHERE stream_id = $2)
                      AS balance,
                  (SELECT plan FROM users WHERE id = $3 AND plan_active_until > now()) AS plan,
                  (SELECT state->>'blocked_reason' FROM streams
                    WHERE stream_id = $1 AND (state->>'blocked')::boolean) AS blocked""",
        f"user-{user_id}",
        f"wallet-{user_id}",
        user_id,
    )
    return Account(
        email=row["email"] or "",
        balance_rcc=int(row["balance"] or 0),
        plan=row["plan"],
        blocked_reason=row["blocked"],
    )


async def first_run(conn: asyncpg.Connection, user_id: str) -> bool:
    """True for a user who never created a job (the jobs read model): with nothing to
    spend, they are welcomed on Buy."""
    found = await conn.fetchval("SELECT 1 FROM jobs WHERE user_id = $1 LIMIT 1", user_id)
    return found is None


def last_days(days: int, today: date | None = None) -> list[date]:
    """The `days` UTC days ending today, oldest first."""
    today = today or datetime.now(UTC).date()
    return [today - timedelta(days=days - 1 - i) for i in range(days)]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC)


async def consumption_per_day(
    conn: asyncpg.Connection, user_id: str, days: list[date]
) -> list[tuple[date, int]]:
    """RCC a user spent on jobs each day: reserves minus the releases (refunds)."""
    rows = await conn.fetch(
        """SELECT (created_at AT TIME ZONE 'UTC')::date AS day, -sum(delta) AS used
             FROM rcc_ledger
            WHERE user_id = $1 AND created_at >= $2
              AND reason IN ('JOB_RESERVE', 'JOB_RELEASE')
            GROUP BY 1""",
        user_id,
        _midnight(days[0]),
    )
    used = {r["day"]: int(r["used"]) for r in rows}
    return [(d, used.get(d, 0)) for d in days]


async def finished_per_day(
    conn: asyncpg.Connection, days: list[date]
) -> dict[str, dict[date, int]]:
    """Jobs that succeeded and failed each day, from the dashboard's hourly counters."""
    found: dict[str, dict[date, int]] = defaultdict(dict)
    for r in await conn.fetch(
        """SELECT metric, (hour AT TIME ZONE 'UTC')::date AS day, sum(value) AS value
             FROM dashboard_hourly
            WHERE metric IN ('jobs_succeeded', 'jobs_failed') AND hour >= $1
            GROUP BY 1, 2""",
        _midnight(days[0]),
    ):
        found[r["metric"]][r["day"]] = int(r["value"])
    return found


async def released_for_job(conn: asyncpg.Connection, user_id: str, job_id: str) -> int:
    """RCC given back for one job (its JOB_RELEASE lines)."""
    total = await conn.fetchval(
        """SELECT COALESCE(sum(delta), 0) FROM rcc_ledger
            WHERE job_id = $1 AND user_id = $2 AND reason = 'JOB_RELEASE'""",
        job_id,
        user_id,
    )
    return int(total)


async def last_ledger_id(conn: asyncpg.Connection, user_id: str) -> int:
    """The newest ledger line's id (0 for none): lines after it are news."""
    found = await conn.fetchval(
        """SELECT id FROM rcc_ledger WHERE user_id = $1
            ORDER BY created_at DESC, id DESC LIMIT 1""",
        user_id,
    )
    return int(found or 0)


async def log_actions(conn: asyncpg.Connection) -> list[str]:
    """The distinct actions in the operations log, by skipping along its action index
    (one index probe per action, however long the log)."""
    rows = await conn.fetch(
        """WITH RECURSIVE a AS (
               (SELECT action FROM ops_log ORDER BY action LIMIT 1)
               UNION ALL
               SELECT (SELECT action FROM ops_log WHERE action > a.action
                        ORDER BY action LIMIT 1)
                 FROM a WHERE a.action IS NOT NULL)
           SELECT action FROM a WHERE action IS NOT NULL"""
    )
    return [r["action"] for r in rows]


async def emails(conn: asyncpg.Connection, user_ids: list[str]) -> dict[str, str]:
    """Email by user id, for the ids on one page."""
    rows = await conn.fetch(
        "SELECT id, email FROM users WHERE id = ANY($1::text[])", list(set(user_ids))
    )
    return {r["id"]: r["email"] for r in rows}
