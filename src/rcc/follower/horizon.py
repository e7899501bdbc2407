"""The commit-safe horizon: whether committed events wait behind a running transaction.

Followers read only events of transactions older than the oldest one still running
(see store/event_store.py). That horizon is server-wide, so a long transaction in any
database holds every follower back; these say whether that is happening and who."""

from __future__ import annotations

import asyncpg


async def held_back(conn: asyncpg.Connection) -> bool:
    """Are committed events waiting behind an older transaction that is still running?"""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM events
                               WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot()))"""
        )
    )


async def oldest_writer(conn: asyncpg.Connection) -> str:
    """The oldest running transaction that holds an xid (what holds events back)."""
    row = await conn.fetchrow(
        """SELECT pid, datname, state, extract(epoch FROM clock_timestamp() - xact_start) AS age
             FROM pg_stat_activity WHERE backend_xid IS NOT NULL
            ORDER BY age(backend_xid) DESC LIMIT 1"""
    )
    if row is None:
        return "none running now"
    return (
        f"pid {row['pid']} in database {row['datname']} ({row['state']}, "
        f"{float(row['age'] or 0):.0f}s old)"
    )
