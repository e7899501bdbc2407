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
from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
import msgspec

from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.domain.lots import LotPolicy
from rcc.service.due_work import Clock, DueWorker, utc_now
from rcc.service.payment_commands import GrantScheduledMonth
from rcc.service.stripe_inbox import execute_retrying

log = logging.getLogger("rcc.scheduler")


class MonthResult(msgspec.Struct, frozen=True, kw_only=True):
    payment_key: str
    month_index: int
    outcome: str  # granted, skipped, duplicate or refused
    detail: str = ""


def month_key(subscription_id: str, period_start: datetime, month_index: int) -> str:
    """The idempotency key of one month's grant."""
    return f"sub:{subscription_id}:{int(period_start.timestamp())}:{month_index}"


class GrantScheduler(DueWorker[asyncpg.Record, MonthResult]):
    """Credits due plan months: `tick()` once, or `run()` until `stop()`."""

    name = "scheduler"

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
        super().__init__(
            pool, clock=clock, interval_s=interval_s, batch_size=batch_size, stop_event=stop_event
        )
        self.lots = lots or LotPolicy()
        # A month is worth no faster retry than the clock's own interval.
        self.max_backoff_s = interval_s

    async def due(
        self, conn: asyncpg.Connection, now: datetime, limit: int
    ) -> list[asyncpg.Record]:
        """Open months due by `now`, oldest first."""
        rows: list[asyncpg.Record] = await conn.fetch(
            """SELECT payment_key, month_index, subscription_id, period_start
                 FROM subscription_schedule
                WHERE granted_at IS NULL AND cancelled_at IS NULL AND due_at <= $1
                ORDER BY due_at, payment_key, month_index
                LIMIT $2""",
            now,
            limit,
        )
        return rows

    async def handle(self, row: asyncpg.Record) -> MonthResult:
        """Grant (or skip) one month under its key; a refused month closes its row."""
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


@contextlib.asynccontextmanager
async def running_scheduler(settings: Settings) -> AsyncIterator[GrantScheduler]:
    """The monthly grants', the lot expiries', the hold timeouts' and the expired
    uploads' schedulers in the background for the life of the block (`rcc serve`,
    `rcc portal`)."""
    from rcc.background import running
    from rcc.service.expiry_scheduler import ExpiryScheduler
    from rcc.service.hold_timeout_scheduler import HoldTimeoutScheduler
    from rcc.service.upload_sweeper import UploadSweeper, uploads_dir

    def make(pool: asyncpg.Pool) -> GrantScheduler:
        return GrantScheduler(pool, lots=settings.lots)

    async with (
        running(settings, make, pool_size=2, name="rcc-grant-scheduler") as it,
        running(settings, ExpiryScheduler, pool_size=2, name="rcc-expiry-scheduler"),
        running(settings, HoldTimeoutScheduler, pool_size=2, name="rcc-hold-timeouts"),
        running(  # h15: expired uploads' files go on the clock, not only on the next upload
            settings,
            lambda pool: UploadSweeper(pool, directory=uploads_dir(settings.data_dir)),
            pool_size=2,
            name="rcc-upload-sweeper",
        ),
    ):
        yield it
