"""The shape every clocked scheduler shares: read the rows due by the clock, run one
idempotent command for each, and tick again until stopped.

A subclass says what is due (`due`) and what one row becomes (`handle`); the batch,
the early stop between rows and the loop (`rcc.service.ticking`) live here once.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import ClassVar, Generic, TypeVar

import asyncpg

from rcc.service.ticking import tick_until_stopped

Clock = Callable[[], datetime]
Row = TypeVar("Row")
Result = TypeVar("Result")


def utc_now() -> datetime:
    """The wall clock, in UTC (the schedulers' default clock)."""
    return datetime.now(UTC)


class DueWorker(ABC, Generic[Row, Result]):
    """Works off due rows: `tick()` once, or `run()` until `stop()`."""

    name: ClassVar[str]
    # A failed tick backs off up to this long before the next try.
    max_backoff_s: float = 30.0

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Clock = utc_now,
        interval_s: float = 1.0,
        batch_size: int = 200,
        stop_event: asyncio.Event | None = None,
    ) -> None:
        self.pool = pool
        self.clock = clock
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.stop_event = stop_event or asyncio.Event()

    @abstractmethod
    async def due(self, conn: asyncpg.Connection, now: datetime, limit: int) -> Sequence[Row]:
        """At most `limit` rows due by `now`, in the order they should run."""

    @abstractmethod
    async def handle(self, row: Row) -> Result:
        """Run the one idempotent command of a due row; what came of it."""

    def stop(self) -> None:
        """Finish the row in hand and return from `run()`."""
        self.stop_event.set()

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

    async def run(self) -> None:
        """Tick until stopped; a full batch ticks again at once, errors back off."""
        await tick_until_stopped(
            self.tick,
            self.stop_event,
            name=self.name,
            interval_s=self.interval_s,
            batch_size=self.batch_size,
            max_backoff_s=self.max_backoff_s,
        )
