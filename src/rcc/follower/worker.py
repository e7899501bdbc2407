"""`FollowerWorker`: keeps a set of followers current until stopped.

Wakes on LISTEN rcc_events, polls every `poll_interval` seconds when nothing is heard
(a lost notification costs latency, never events), and looks again within
milliseconds while committed events wait behind a running transaction. Errors are
logged and retried with backoff; the batch that failed left nothing behind.

Blocked (an event type this version does not know): the worker logs it, leaves the
mark in its checkpoint row for `rcc projections status` and /readyz, and looks again
only every `blocked_poll_interval` seconds, ignoring wake-ups (each new event would
otherwise wake it to fail on the same one). A newer process takes over from the
checkpoint; if it runs beside this one, this one finds the checkpoint moved and
carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

import asyncpg

from rcc.follower import checkpoints
from rcc.follower.batch import BatchResult, Follower, follow_batch
from rcc.follower.checkpoints import Kind
from rcc.follower.decoding import Blocked
from rcc.follower.horizon import held_back, oldest_writer
from rcc.store.listener import LogListener

log = logging.getLogger(__name__)

# While committed events wait behind an older running transaction, look again soon.
HELD_BACK_FIRST_DELAY = 0.002
HELD_BACK_MAX_DELAY = 0.05
MAX_ERROR_DELAY = 30.0
STALL_WARNING = 10.0  # seconds of held-back events before the log names the holder
BLOCKED_POLL = 5.0  # seconds between looks while blocked on an unknown event type
BLOCKED_REMINDER = 300.0  # seconds between repeats of the blocked line in the log


class FollowerWorker:
    """Follows the log for `followers`: `run()` until `stop()` (or the stop event)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        followers: Sequence[Follower],
        *,
        kind: Kind,
        label: str,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        blocked_poll_interval: float = BLOCKED_POLL,
        stop_event: asyncio.Event | None = None,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.pool = pool
        self.followers = list(followers)
        self.kind: Kind = kind
        self.label = label
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.blocked_poll_interval = blocked_poll_interval
        self.stop_event = stop_event or asyncio.Event()
        self.on_batch = on_batch
        self.blocked: Blocked | None = None  # where this process stands blocked, if it is
        self.batches = 0  # batches read so far (a busy loop would show here)
        self._wake = asyncio.Event()
        self._listener = LogListener(pool, self._wake.set)
        self._ensured = False  # checkpoint rows exist (made on the first drain)
        self._held_since: float | None = None
        self._warned_at = 0.0
        self._blocked_said_at = 0.0

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
                    log.exception("%s batch failed (attempt %s): %s", self.label, errors, error)
                    await self._sleep(min(MAX_ERROR_DELAY, 0.1 * 2**errors))
                    continue
                if self.blocked is not None:
                    await self._pause(self.blocked_poll_interval)
                elif waiting:
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
        """Apply batches until caught up or blocked; True if committed events are still
        held back by an older running transaction."""
        if not self._ensured:
            async with self.pool.acquire() as conn:
                await checkpoints.ensure(conn, [f.name for f in self.followers], self.kind)
            self._ensured = True
        while not self.stopping:
            async with self.pool.acquire() as conn:
                result = await follow_batch(conn, self.followers, limit=self.batch_size)
            self.batches += 1
            if result.events and self.on_batch is not None:
                self.on_batch(result)
            self._note_blocked(result)
            if result.blocked is not None or result.events < self.batch_size:
                break
        async with self.pool.acquire() as conn:
            waiting = await held_back(conn)
            await self._warn_if_stalled(conn, waiting)
        return waiting

    def _note_blocked(self, result: BatchResult) -> None:
        """Say in the log that the followers stopped before an unknown event type (once,
        then every BLOCKED_REMINDER seconds), and that they went on once they do."""
        now = time.monotonic()
        blocked = result.blocked
        if blocked is None:
            if self.blocked is not None and result.followers:
                log.warning("%s moved on: %s is no longer blocking", self.label, self.blocked)
                self.blocked = None
            return
        if blocked != self.blocked or now - self._blocked_said_at >= BLOCKED_REMINDER:
            self._blocked_said_at = now
            log.error("%s (%s) %s", self.label, ", ".join(result.followers), blocked)
        self.blocked = blocked

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
        """Wait `seconds`, or less if a notification (or stop) wakes the worker."""
        if self.stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds` whatever is notified meanwhile; only stop ends it early."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_event.wait(), seconds)
        self._wake.clear()
