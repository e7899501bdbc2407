"""`rcc_read_wallet_changed`: tells readers of rcc_read which wallets a batch changed.

NOTIFY is delivered when the batch's transaction commits, so a reader woken by it sees
the new rows. Identical notifications in one transaction are sent once, so the
balances and lots projections may both announce a wallet they change together.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

CHANNEL = "rcc_read_wallet_changed"


async def wallets_changed(conn: asyncpg.Connection, wallet_ids: Iterable[str]) -> None:
    """Announce these wallets, unless this batch writes a replay's shadow tables (their
    rows are the same as the live ones: nothing a reader sees changes)."""
    wallets = sorted(set(wallet_ids))
    if not wallets:
        return
    await conn.execute(
        """SELECT pg_notify($1, w) FROM unnest($2::text[]) AS w
            WHERE current_schema() = 'public'""",
        CHANNEL,
        wallets,
    )
