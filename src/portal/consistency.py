"""Read-your-writes for the portal.

Reads wait (briefly, bounded) until the projections they use have applied the
newest event of the caller's wallet. Every command a user can cause touches that
wallet (a job's reserve, release or settlement; grants; adjustments), so once the
projections pass its head the user's own writes are visible, whichever portal
process served them. Commands themselves answer at once and never wait."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from rcc.projector.wait import wait_for
from rcc.store.event_store import Checkpoint


async def wallet_head(pool: asyncpg.Pool, wallet_id: str) -> Checkpoint:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT tx_id::text::bigint AS tx_id, position FROM events
                WHERE stream_id = $1 ORDER BY version DESC LIMIT 1""",
            f"wallet-{wallet_id}",
        )
    return Checkpoint(row["tx_id"], row["position"]) if row else Checkpoint()


async def caught_up(
    pool: asyncpg.Pool, wallet_id: str, projections: Sequence[str], wait_s: float
) -> bool:
    """Wait (at most `wait_s`) until `projections` reflect everything in this wallet's
    stream; False when they did not in time (the read then answers what it has)."""
    return await wait_for(pool, await wallet_head(pool, wallet_id), projections, wait_s)
