"""One batch in one transaction, and the worker that keeps every projection current.

A batch: take the free projections' locks, read their checkpoints, read the log after
the oldest of them in commit-safe order, fold the events into each projection, flush,
move the checkpoints, commit. A crash anywhere before the commit leaves nothing; after
it, everything. So `kill -9` mid-batch neither loses nor doubles an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from rcc.projector import checkpoints
from rcc.projector.apply import apply_events, decode
from rcc.projector.model import Projection
from rcc.store.event_store import Checkpoint, RecordedEvent, read_all
from rcc.store.listener import LogListener

log = logging.getLogger(__name__)

# While committed events wait behind an older running transaction, look again soon.
HELD_BACK_FIRST_DELAY = 0.002
HELD_BACK_MAX_DELAY = 0.05
MAX_ERROR_DELAY = 30.0
STALL_WARNING = 10.0  # seconds of held-back events before the log names the holder


@dataclass
class BatchResult:
    """What one batch did: the projections it held and the events it read."""

    projections: list[str] = field(default_factory=list)
    records: list[RecordedEvent] = field(default_factory=list)
    checkpoint: Checkpoint | None = None

    @property
    def events(self) -> int:
        return len(self.records)


async def project_batch(
    conn: asyncpg.Connection, projections: Sequence[Projection[Any]], *, limit: int = 1000
) -> BatchResult:
    """Apply up to `limit` events to every free projection, in one transaction."""
    async with conn.transaction():
        locked = await checkpoints.try_lock(conn, [p.name for p in projections])
        stored = await checkpoints.load(conn, locked)
        targets = [(p, stored[p.name]) for p in projections if p.name in stored]
        if not targets:
            return BatchResult()
        start = min(after for _, after in targets)
        records = await read_all(conn, start, limit)
        if not records:
            return BatchResult(projections=[p.name for p, _ in targets])
        await apply_events(conn, targets, decode(records))
        last = records[-1].checkpoint
        await checkpoints.save(conn, [p.name for p, after in targets if after < last], last)
    return BatchResult([p.name for p, _ in targets], records, last)


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


async def held_back(conn: asyncpg.Connection) -> bool:
    """Are committed events waiting behind an older transaction that is still running?"""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM events
                               WHERE tx_id >= pg_snapshot_xmin(pg_current_snapshot()))"""
        )
    )


class ProjectorWorker:
    """Keeps projections current: `run()` until `stop()` (or the stop event) is set.

    Wakes on LISTEN rcc_events, polls every `poll_interval` seconds when nothing is
    heard (a lost notification costs latency, never events), and looks again within
    milliseconds while committed events wait behind a running transaction. Errors are
    logged and retried with backoff; the batch that failed left nothing behind.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        projections: Sequence[Projection[Any]],
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        stop_event: asyncio.Event | None = None,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.pool = pool
        self.projections = list(projections)
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.stop_event = stop_event or asyncio.Event()
        self.on_batch = on_batch
        self._wake = asyncio.Event()
        self._listener = LogListener(pool, self._wake.set)
        self._ensured = False  # checkpoint rows exist (made on the first drain)
        self._held_since: float | None = None
        self._warned_at = 0.0

    def stop(self) -> None:
        """Ask the worker to finish its current batch and return from `run()`."""
        self.stop_event.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    async def run(self) -> None:
        """Follow the log until stopped."""
        stop_watch = asyncio.create_task(self._watch_stop())
        errors = 0
        delay = HELD_BACK_FIRST_DELAY
        try:
            while not self.stopping:
                try:
                    await self._listener.ensure()
                    waiting = await self.drain()
                    errors = 0
                except Exception as error:  # a worker outlives any one failed batch
                    errors += 1
                    log.exception("projector batch failed (attempt %s): %s", errors, error)
                    await self._sleep(min(MAX_ERROR_DELAY, 0.1 * 2**errors))
                    continue
                if waiting:
                    await self._sleep(delay)
                    delay = min(delay * 2, HELD_BACK_MAX_DELAY)
                else:
                    delay = HELD_BACK_FIRST_DELAY
                    await self._sleep(self.poll_interval)
        finally:
            stop_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stop_watch
            await self._listener.close()

    async def drain(self) -> bool:
        """Apply batches until caught up; True if committed events are still held back."""
        if not self._ensured:
            async with self.pool.acquire() as conn:
                await checkpoints.ensure(conn, [p.name for p in self.projections])
            self._ensured = True
        while not self.stopping:
            async with self.pool.acquire() as conn:
                result = await project_batch(conn, self.projections, limit=self.batch_size)
            if result.events and self.on_batch is not None:
                self.on_batch(result)
            if result.events < self.batch_size:
                break
        async with self.pool.acquire() as conn:
            waiting = await held_back(conn)
            await self._warn_if_stalled(conn, waiting)
        return waiting

    async def _warn_if_stalled(self, conn: asyncpg.Connection, waiting: bool) -> None:
        """Name the transaction holding events back once they have waited STALL_WARNING
        seconds (pg_snapshot_xmin is server-wide: any database's writer counts)."""
        now = time.monotonic()
        if not waiting:
            self._held_since = None
            return
        if self._held_since is None:
            self._held_since = self._warned_at = now
        elif now - self._warned_at >= STALL_WARNING:
            self._warned_at = now
            log.warning(
                "committed events held back for %.0fs by an older running transaction: %s",
                now - self._held_since,
                await oldest_writer(conn),
            )

    async def _watch_stop(self) -> None:
        await self.stop_event.wait()
        self._wake.set()

    async def _sleep(self, seconds: float) -> None:
        if self.stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
