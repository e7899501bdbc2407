"""Reads of the `lots` read model: a wallet's lots for the API and the pages."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import msgspec


class LotRow(msgspec.Struct, frozen=True, kw_only=True):
    lot_id: str
    source: str
    amount: int
    remaining: int
    priority: int
    granted_at: datetime
    expires_at: datetime | None
    ref: str | None


# Spending order (docs/LOTS.md): priority, soonest expiry (none last), oldest, lot number.
_LIVE = """
SELECT lot_id, source, amount, remaining, priority, granted_at, expires_at, ref
  FROM lots
 WHERE wallet_id = $1 AND remaining > 0 AND expired_at IS NULL
   AND (expires_at IS NULL OR expires_at > $2)
 ORDER BY priority, expires_at NULLS LAST, granted_at, length(lot_id), lot_id
 LIMIT $3"""


async def live_lots(
    conn: asyncpg.Connection, wallet_id: str, now: datetime, limit: int = 200
) -> list[LotRow]:
    """A wallet's unexpired lots with something left, in spending order (at most `limit`)."""
    rows = await conn.fetch(_LIVE, wallet_id, now, limit)
    return [msgspec.convert(dict(row), LotRow) for row in rows]


async def available(conn: asyncpg.Connection, wallet_id: str, now: datetime) -> int:
    """What can be spent at this instant: the projected balance less the lots past their
    time whose CREDITS_EXPIRED is not written yet (a wallet from before lots has none)."""
    total = await conn.fetchval(
        """SELECT b.balance - COALESCE((SELECT sum(l.remaining) FROM lots l
                                         WHERE l.wallet_id = b.wallet_id AND l.remaining > 0
                                           AND l.expired_at IS NULL AND l.expires_at <= $2), 0)
             FROM wallet_balances b WHERE b.wallet_id = $1""",
        wallet_id,
        now,
    )
    return int(total or 0)
