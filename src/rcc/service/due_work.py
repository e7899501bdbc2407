"""The shape every clocked scheduler shares: read the rows due by the clock, run one
idempotent command for each, and tick again until stopped.

A subclass says what is due (`due`) and what one row becomes (`handle`); the batch and
the early stop between rows live here once, the loop in `rcc.service.ticking`.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

import asyncpg

from rcc.service.ticking import TickingWorker

Clock = Callable[[], datetime]
Row = TypeVar("Row")
Result = TypeVar("Result")


def utc_now() -> datetime:
    """The wall clock, in UTC (the schedulers' default clock)."""
    return datetime.now(UTC)


class DueWorker(TickingWorker, Generic[Row, Result]):
    """Works off due rows: `tick()` once, or `run()` until `stop()`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Clock = utc_now,
        interval_s: float = 1.0,
        batch_size: int = 200,
        stop_event: asyncio.Event | None = None,
    ) -> None:
        super().__init__(interval_s=interval_s, batch_size=batch_size, stop_event=stop_event)
        self.pool = pool
        self.clock = clock

    @abstractmethod
    async def due(self, conn: asyncpg.Connection, now: datetime, limit: int) -> Sequence[Row]:
        """At most `limit` rows due by `now`, in the order they should run."""

    @abstractmethod
    async def handle(self, row: Row) -> Result:
        """Run the one idempotent command of a due row; what came of it."""

    async def tick(self) -> list[Result]:
        """Handle every row due by now (one batch), in order; stops early when stopped."""
        async with self.pool.acquire() as conn:
            rows = await self.due(conn, self.clock(), self.batch_size)
        results = []
        for row in rows:
            if self.stop_event.is_set():
                break
            results.append(await self.handle(row))
        return results
