"""The schedule of hold timeouts (`hold_timeouts`), written with the hold's events."""

from __future__ import annotations

from datetime import datetime

import asyncpg


async def schedule_timeout(
    conn: asyncpg.Connection, hold_id: str, wallet_id: str, due_at: datetime
) -> None:
    """Remember when a new hold voids itself (in the caller's transaction)."""
    await conn.execute(
        "INSERT INTO hold_timeouts (hold_id, wallet_id, due_at) VALUES ($1, $2, $3)",
        hold_id,
        wallet_id,
        due_at,
    )


async def close_timeout(conn: asyncpg.Connection, hold_id: str) -> None:
    """The hold ended: its timeout has nothing left to do (in the caller's transaction)."""
    await conn.execute(
        "UPDATE hold_timeouts SET done_at = now() WHERE hold_id = $1 AND done_at IS NULL",
        hold_id,
    )


async def due_timeouts(conn: asyncpg.Connection, now: datetime, limit: int) -> list[str]:
    """Ids of open holds whose timeout has come, soonest first."""
    rows = await conn.fetch(
        """SELECT hold_id FROM hold_timeouts
            WHERE done_at IS NULL AND due_at <= $1
            ORDER BY due_at, hold_id LIMIT $2""",
        now,
        limit,
    )
    return [r["hold_id"] for r in rows]
