"""The schedule of lot expiries (`lot_expiries`), written with the events that make lots."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from rcc.domain import wallet as wallets
from rcc.domain.events import CreditsAdjusted, CreditsReleased, Event, GrantEvent, HoldReleased


def expiring_lots(events: Sequence[Event]) -> list[tuple[str, datetime]]:
    """(lot id, expiry) of every lot with an expiry these events create."""
    found: list[tuple[str, datetime]] = []
    for event in events:
        match event:
            case GrantEvent() | CreditsAdjusted() if event.lot and event.expires_at:
                found.append((event.lot, event.expires_at))
            case CreditsReleased() | HoldReleased() if event.relot and event.relot_expires_at:
                found.append((event.relot, event.relot_expires_at))
    return found


async def schedule_expiries(
    conn: asyncpg.Connection, wallet_id: str, after: wallets.WalletState, events: Sequence[Event]
) -> None:
    """Add the expiries of the lots these events create (in the caller's transaction).

    `after` is the wallet once they are applied: a lot already spent in the same
    transaction needs no row."""
    live = {lot.id for lot in after.lots}
    due = [(lot, at) for lot, at in expiring_lots(events) if lot in live]
    if not due:
        return
    await conn.execute(
        """INSERT INTO lot_expiries (wallet_id, lot, expires_at)
           SELECT $1, * FROM unnest($2::text[], $3::timestamptz[])
           ON CONFLICT DO NOTHING""",
        wallet_id,
        [lot for lot, _ in due],
        [at for _, at in due],
    )


async def due_expiries(
    conn: asyncpg.Connection, now: datetime, limit: int
) -> list[tuple[str, str]]:
    """(wallet id, lot) of open expiries due by `now`, soonest first."""
    rows = await conn.fetch(
        """SELECT wallet_id, lot FROM lot_expiries
            WHERE done_at IS NULL AND expires_at <= $1
            ORDER BY expires_at, wallet_id, lot LIMIT $2""",
        now,
        limit,
    )
    return [(r["wallet_id"], r["lot"]) for r in rows]


async def mark_done(conn: asyncpg.Connection, wallet_id: str, lot: str) -> None:
    """Close an expiry row once its lot has been dealt with."""
    await conn.execute(
        """UPDATE lot_expiries SET done_at = now()
            WHERE wallet_id = $1 AND lot = $2 AND done_at IS NULL""",
        wallet_id,
        lot,
    )
