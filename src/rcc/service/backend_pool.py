"""The usable backends now, for the adapter (and any dispatcher): one read of the
`backend-pool` stream's folded state, current with every committed change (no
projection lag), so an admin's drain or removal reaches the next dispatch decision."""

from __future__ import annotations

import asyncpg

from rcc.domain.backends import BackendState, PoolState
from rcc.domain.events import BACKEND_POOL_STREAM
from rcc.store.heads import read_head


async def usable_backends(conn: asyncpg.Connection) -> list[BackendState]:
    """Every backend in the pool (url, slots, tags, draining), ordered by URL.

    Draining ones are included: they still finish what they hold (`draining` says to
    send them nothing new). Removed ones are gone."""
    head = await read_head(conn, BACKEND_POOL_STREAM)
    if not head.version:
        return []
    pool = head.as_state(PoolState)
    return sorted(pool.backends.values(), key=lambda b: b.url)
