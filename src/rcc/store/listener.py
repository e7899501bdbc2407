"""LISTEN rcc_events on a pooled connection, for followers of the log.

A notification only wakes a follower early; followers also poll, so a failed LISTEN
or a lost connection costs latency, never events."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import asyncpg

from rcc.store.notify import CHANNEL

log = logging.getLogger(__name__)
_GONE = (asyncpg.PostgresError, OSError, asyncpg.InterfaceError)


class LogListener:
    """Keeps one pooled connection listening; `ensure()` (re)opens it when needed."""

    def __init__(self, pool: asyncpg.Pool, wake: Callable[[], None]) -> None:
        self._pool = pool
        self._wake = wake
        self._conn: asyncpg.Connection | None = None

    def _notified(self, *_: object) -> None:
        self._wake()

    def listening(self) -> bool:
        try:
            return self._conn is not None and not self._conn.is_closed()
        except asyncpg.InterfaceError:  # PostgreSQL went away and the pool took it back
            return False

    async def ensure(self) -> None:
        """Listen, unless already listening; on failure log it and rely on polling."""
        if self.listening():
            return
        await self.close()
        conn = await self._pool.acquire()
        try:
            await conn.add_listener(CHANNEL, self._notified)
        except (asyncpg.PostgresError, OSError) as error:
            await self._pool.release(conn)
            log.warning("cannot LISTEN %s, polling only: %s", CHANNEL, error)
            return
        except BaseException:
            await self._pool.release(conn)
            raise
        self._conn = conn

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(*_GONE):
            if not conn.is_closed():
                await conn.remove_listener(CHANNEL, self._notified)
        with contextlib.suppress(*_GONE):
            await self._pool.release(conn)
