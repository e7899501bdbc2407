"""Aggregate state as of a past position or moment, folded from the log itself."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from rcc.domain import wallet as wallets
from rcc.domain.events import wallet_stream
from rcc.store.event_store import read_stream_until


async def wallet_as_of(
    conn: asyncpg.Connection,
    wallet_id: str,
    *,
    position: int | None = None,
    at: datetime | None = None,
) -> wallets.WalletState:
    """The wallet as it stood after global position `position` and/or at moment `at`."""
    events = await read_stream_until(conn, wallet_stream(wallet_id), position=position, at=at)
    return wallets.fold([e.decode() for e in events])
