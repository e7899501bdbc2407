"""The webhook tables (schema/0019): endpoints, the outbox, expiring-lot notices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec

from rcc.store.wallet_lots import remaining_sql
from rcc.webhooks.messages import EXPIRING_AHEAD_DAYS, Notice


class Endpoint(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    url: str
    events: list[str]
    created_at: datetime


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    endpoint_id: str
    message_id: str
    type: str
    status: str  # pending, delivered, dead
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class Claimed(msgspec.Struct, frozen=True, kw_only=True):
    """A delivery taken by a sender for one attempt, with what it needs to send it."""

    id: int
    message_id: str
    payload: str
    attempts: int
    url: str
    secret: str


_DELIVERY_COLUMNS = (
    "id, endpoint_id, message_id, type, status, attempts,"
    " CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at,"
    " last_status, last_error, created_at, delivered_at"
)


async def insert_endpoint(
    conn: asyncpg.Connection, endpoint_id: str, url: str, events: Sequence[str], secret: str
) -> None:
    await conn.execute(
        "INSERT INTO webhook_endpoints (id, url, events, secret) VALUES ($1, $2, $3, $4)",
        endpoint_id,
        url,
        list(events),
        secret,
    )


async def delete_endpoint(conn: asyncpg.Connection, endpoint_id: str) -> bool:
    """Mark an endpoint deleted; False if there is no live one. Its queue stops."""
    done = await conn.execute(
        "UPDATE webhook_endpoints SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL",
        endpoint_id,
    )
    return bool(done.endswith(" 1"))


async def endpoint_exists(conn: asyncpg.Connection, endpoint_id: str) -> bool:
    found = await conn.fetchval("SELECT 1 FROM webhook_endpoints WHERE id = $1", endpoint_id)
    return found is not None


async def list_endpoints(conn: asyncpg.Connection, after: str | None, limit: int) -> list[Endpoint]:
    """Live endpoints, oldest first, after the id `after`."""
    rows = await conn.fetch(
        """SELECT id, url, events, created_at FROM webhook_endpoints
            WHERE deleted_at IS NULL AND ($1::text IS NULL OR id > $1)
            ORDER BY id LIMIT $2""",
        after,
        limit,
    )
    return [msgspec.convert(dict(r), Endpoint) for r in rows]


async def enqueue(conn: asyncpg.Connection, notices: Sequence[Notice]) -> int:
    """Queue each notice for every live endpoint that asked for its type and existed
    when it happened; a message already queued for an endpoint is not queued again."""
    if not notices:
        return 0
    done = await conn.execute(
        """INSERT INTO webhook_deliveries (endpoint_id, message_id, type, payload)
           SELECT e.id, n.message_id, n.type, n.payload
             FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
                  AS n(message_id, type, payload, created_at)
             JOIN webhook_endpoints e
               ON e.deleted_at IS NULL AND n.type = ANY(e.events)
              AND e.created_at <= n.created_at
           ON CONFLICT (endpoint_id, message_id) DO NOTHING""",
        [n.message_id for n in notices],
        [n.type for n in notices],
        [n.body() for n in notices],
        [n.created_at for n in notices],
    )
    return int(done.split()[-1])


async def claim_due(conn: asyncpg.Connection, limit: int, lease_s: float) -> list[Claimed]:
    """Take up to `limit` due deliveries for one attempt each: their next attempt moves
    `lease_s` ahead first, so a sender that dies mid-delivery leaves them due again."""
    rows = await conn.fetch(
        """WITH due AS (
               SELECT d.id FROM webhook_deliveries d
                 JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.deleted_at IS NULL
                WHERE d.status = 'pending' AND d.next_attempt_at <= now()
                ORDER BY d.next_attempt_at LIMIT $1
                  FOR UPDATE OF d SKIP LOCKED)
           UPDATE webhook_deliveries d
              SET next_attempt_at = now() + make_interval(secs => $2)
             FROM due, webhook_endpoints e
            WHERE d.id = due.id AND e.id = d.endpoint_id
        RETURNING d.id, d.message_id, d.payload, d.attempts, e.url, e.secret""",
        limit,
        lease_s,
    )
    return [msgspec.convert(dict(r), Claimed) for r in rows]


async def mark_delivered(conn: asyncpg.Connection, delivery_id: int, status: int) -> None:
    await conn.execute(
        """UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1,
                  last_status = $2, last_error = NULL, delivered_at = now()
            WHERE id = $1 AND status = 'pending'""",
        delivery_id,
        status,
    )


async def mark_failed(
    conn: asyncpg.Connection,
    delivery_id: int,
    status: int | None,
    error: str,
    retry_in_s: float | None,
) -> None:
    """Record a failed attempt: due again in `retry_in_s`, or dead (None)."""
    await conn.execute(
        """UPDATE webhook_deliveries
              SET attempts = attempts + 1, last_status = $2, last_error = $3,
                  status = CASE WHEN $4::float8 IS NULL THEN 'dead' ELSE 'pending' END,
                  next_attempt_at = now() + make_interval(secs => coalesce($4::float8, 0))
            WHERE id = $1 AND status = 'pending'""",
        delivery_id,
        status,
        error[:500],
        retry_in_s,
    )


async def redeliver(conn: asyncpg.Connection, endpoint_id: str, delivery_id: int) -> str | None:
    """Make a delivery due now, whatever became of it (a dead letter, or one the
    receiver lost after accepting it); its message id, or None if this endpoint has no
    such delivery."""
    found: str | None = await conn.fetchval(
        """UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now(),
                  delivered_at = NULL
            WHERE id = $1 AND endpoint_id = $2 RETURNING message_id""",
        delivery_id,
        endpoint_id,
    )
    return found


async def list_deliveries(
    conn: asyncpg.Connection,
    endpoint_id: str | None,
    status: str | None,
    before: int | None,
    limit: int,
) -> list[Delivery]:
    """Deliveries newest first (of one endpoint, of one status), ids below `before`."""
    rows = await conn.fetch(
        f"""SELECT {_DELIVERY_COLUMNS} FROM webhook_deliveries
             WHERE ($1::text IS NULL OR endpoint_id = $1) AND ($2::text IS NULL OR status = $2)
               AND ($3::bigint IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4""",
        endpoint_id,
        status,
        before,
        limit,
    )
    return [msgspec.convert(dict(r), Delivery) for r in rows]


async def expiring_lots(
    conn: asyncpg.Connection, now: datetime, limit: int
) -> list[tuple[str, str, datetime, int | None]]:
    """Lots expiring within EXPIRING_AHEAD_DAYS that were not announced yet, with what
    is left of them (from the wallet's lot rows, rcc.store.wallet_lots; None if gone)."""
    rows = await conn.fetch(
        f"""SELECT x.wallet_id, x.lot, x.expires_at,
                   {remaining_sql("x.wallet_id", "x.lot")} AS remaining
             FROM lot_expiries x
            WHERE x.done_at IS NULL AND x.expires_at <= $1 AND x.expires_at > now()
              AND NOT EXISTS (SELECT 1 FROM webhook_expiring_notices n
                               WHERE n.wallet_id = x.wallet_id AND n.lot = x.lot)
            ORDER BY x.expires_at LIMIT $2""",
        now + timedelta(days=EXPIRING_AHEAD_DAYS),
        limit,
    )
    return [(r["wallet_id"], r["lot"], r["expires_at"], r["remaining"]) for r in rows]


async def mark_expiring_noticed(conn: asyncpg.Connection, wallet_id: str, lot: str) -> None:
    await conn.execute(
        "INSERT INTO webhook_expiring_notices (wallet_id, lot) VALUES ($1, $2)"
        " ON CONFLICT DO NOTHING",
        wallet_id,
        lot,
    )
