"""Hold timeouts: a worker that voids every service hold not settled by its time.

Durable schedule (`hold_timeouts`, written with the hold). A tick voids every open row
whose time has passed, soonest first, each under the key `hold-timeout:<id>`; the hold's
stream has the last word (an ended hold refuses another end), so any number of
schedulers void a hold exactly once. The row is closed in the transaction that ends
the hold, whoever ends it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from rcc.domain.errors import DomainError
from rcc.service.hold_commands import VoidHold
from rcc.service.stripe_inbox import execute_retrying
from rcc.service.ticking import tick_until_stopped
from rcc.store.hold_timeouts import due_timeouts

log = logging.getLogger("rcc.holds")

Clock = Callable[[], datetime]


def timeout_key(hold_id: str) -> str:
    """The idempotency key of one hold's timeout."""
    return f"hold-timeout:{hold_id}"


class HoldTimeoutScheduler:
    """Voids holds whose timeout has come: `tick()` once, or `run()` until `stop()`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        interval_s: float = 1.0,
        batch_size: int = 200,
        stop_event: asyncio.Event | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.stop_event = stop_event or asyncio.Event()

    def stop(self) -> None:
        """Finish the hold in hand and return from `run()`."""
        self.stop_event.set()

    async def tick(self) -> list[str]:
        """Void every hold due by now (one batch); the ids it voided."""
        async with self.pool.acquire() as conn:
            due = await due_timeouts(conn, self.clock(), self.batch_size)
        voided = []
        for hold_id in due:
            if self.stop_event.is_set():
                break
            done = await execute_retrying(
                self.pool,
                VoidHold(hold_id=hold_id, service=None),
                metadata={"actor": "hold-timeout"},
                idempotency_key=timeout_key(hold_id),
            )
            if isinstance(done, DomainError):
                log.info("hold %s not voided: %s", hold_id, done.detail)
            else:
                voided.append(hold_id)
        return due

    async def run(self) -> None:
        """Tick until stopped; a full batch ticks again at once, errors back off."""
        await tick_until_stopped(
            self.tick,
            self.stop_event,
            name="hold-timeout",
            interval_s=self.interval_s,
            batch_size=self.batch_size,
            max_backoff_s=30.0,
        )
