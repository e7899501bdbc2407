"""Waking followers after commits, without putting NOTIFY inside the transactions.

A NOTIFY in a transaction holds a server-wide lock through its commit, so every
appending transaction would commit one at a time. Instead each process, after a
commit, asks for one `NOTIFY rcc_events` a few milliseconds later: many commits
share one notification, and a lost one only costs latency (followers also poll)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

CHANNEL = "rcc_events"
DELAY_S = 0.002

log = logging.getLogger(__name__)
# Pools cannot be weakly referenced: keyed by id while a notification is pending.
_pending: dict[int, asyncio.Task[None]] = {}


async def _notify_later(pool: asyncpg.Pool) -> None:
    await asyncio.sleep(DELAY_S)
    _pending.pop(id(pool), None)  # commits from now on ask for the next notification
    with contextlib.suppress(asyncpg.PostgresError, OSError, asyncpg.InterfaceError):
        async with pool.acquire() as conn:
            await conn.execute(f"NOTIFY {CHANNEL}")


def events_committed(pool: asyncpg.Pool) -> None:
    """Schedule one notification for every commit of this process in the next moment."""
    if id(pool) in _pending or pool.is_closing():
        return
    _pending[id(pool)] = asyncio.get_running_loop().create_task(_notify_later(pool))
