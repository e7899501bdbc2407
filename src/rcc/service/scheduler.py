"""The annual plans' monthly grants: a worker that credits each month when it falls due.

The schedule is durable (`subscription_schedule`, written with the payment that made it).
A tick grants every open month whose due time has passed by the clock, oldest first, so
a scheduler that was down catches up. Each month runs as one command under the key
`sub:<subscription>:<period start>:<month>`, and marks its row in the same transaction:
a crash loses nothing (the row is still open) and a restart or a second scheduler
doubles nothing (the key, and the payment stream's state, say it was granted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import asyncpg
import msgspec

from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.domain.lots import LotPolicy
from rcc.service.payment_commands import GrantScheduledMonth
from rcc.service.stripe_inbox import execute_retrying
from rcc.service.ticking import tick_until_stopped

log = logging.getLogger("rcc.scheduler")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class MonthResult(msgspec.Struct, frozen=True, kw_only=True):
    payment_key: str
    month_index: int
    outcome: str  # granted, skipped, duplicate or refused
    detail: str = ""


def month_key(subscription_id: str, period_start: datetime, month_index: int) -> str:
    """The idempotency key of one month's grant."""
    return f"sub:{subscription_id}:{int(period_start.timestamp())}:{month_index}"


class GrantScheduler:
    """Credits due plan months: `tick()` once, or `run()` until `stop()`."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        clock: Clock = utc_now,
        interval_s: float = 60.0,
        batch_size: int = 200,
        stop_event: asyncio.Event | None = None,
        lots: LotPolicy | None = None,
    ) -> None:
        self.pool = pool
        self.lots = lots or LotPolicy()
        self.clock = clock
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.stop_event = stop_event or asyncio.Event()

    def stop(self) -> None:
        """Finish the month in hand and return from `run()`."""
        self.stop_event.set()

    async def tick(self) -> list[MonthResult]:
        """Grant (or skip) every open month due by now, oldest first (one batch)."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                """SELECT payment_key, month_index, subscription_id, period_start
                     FROM subscription_schedule
                    WHERE granted_at IS NULL AND cancelled_at IS NULL AND due_at <= $1
                    ORDER BY due_at, payment_key, month_index
                    LIMIT $2""",
                self.clock(),
                self.batch_size,
            )
        results = []
        for row in rows:
            if self.stop_event.is_set():
                break
            results.append(await self._grant(row))
        return results

    async def _grant(self, row: asyncpg.Record) -> MonthResult:
        key, index = row["payment_key"], row["month_index"]
        done = await execute_retrying(
            self.pool,
            GrantScheduledMonth(payment_key=key, month_index=index, lots=self.lots),
            metadata={"actor": "scheduler", "provider": "stripe", "payment_flow": "stripe"},
            idempotency_key=month_key(row["subscription_id"], row["period_start"], index),
        )
        if isinstance(done, DomainError):
            # Nothing to grant (already settled, or not a plan period): close the row so
            # it is not picked again; a granted row is never touched.
            log.warning("scheduled month %s/%s not granted: %s", key, index, done.detail)
            async with self.pool.acquire() as conn:
                await conn.execute(
                    """UPDATE subscription_schedule SET cancelled_at = now()
                        WHERE payment_key = $1 AND month_index = $2 AND granted_at IS NULL
                          AND cancelled_at IS NULL""",
                    key,
                    index,
                )
            return MonthResult(payment_key=key, month_index=index, outcome="refused",
                               detail=done.detail)  # fmt: skip
        outcome = "duplicate" if done.replayed else str(done.result["outcome"])
        log.info("scheduled month %s/%s: %s", key, index, outcome)
        return MonthResult(
            payment_key=key,
            month_index=index,
            outcome=outcome,
            detail=str(done.result.get("detail", "")),
        )

    async def run(self) -> None:
        """Tick until stopped; a full batch ticks again at once, errors back off."""
        await tick_until_stopped(
            self.tick,
            self.stop_event,
            name="scheduler",
            interval_s=self.interval_s,
            batch_size=self.batch_size,
            max_backoff_s=self.interval_s,
        )


@contextlib.asynccontextmanager
async def running_scheduler(settings: Settings) -> AsyncIterator[GrantScheduler]:
    """The monthly grants', the lot expiries' and the hold timeouts' schedulers in the
    background for the life of the block (`rcc serve`, `rcc portal`)."""
    from rcc.background import running
    from rcc.service.expiry_scheduler import ExpiryScheduler
    from rcc.service.hold_timeout_scheduler import HoldTimeoutScheduler

    def make(pool: asyncpg.Pool) -> GrantScheduler:
        return GrantScheduler(pool, lots=settings.lots)

    async with (
        running(settings, make, pool_size=2, name="rcc-grant-scheduler") as it,
        running(settings, ExpiryScheduler, pool_size=2, name="rcc-expiry-scheduler"),
        running(settings, HoldTimeoutScheduler, pool_size=2, name="rcc-hold-timeouts"),
    ):
        yield it
