"""Lot expiries: a worker that writes CREDITS_EXPIRED when a lot's time has come.

The schedule is durable (`lot_expiries`, written with the events that create lots). A
tick expires every open row whose time has passed, soonest first, so a scheduler that
was down catches up. Each lot runs as one command under the key `expire:<wallet>:<lot>`
and the wallet's events have the last word (a lot drawn to nothing or expired already
expires nothing), so any number of schedulers write each expiry once. The row is marked
after the command, in its own statement: a crash in between only means the next tick
asks again and the key answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg
import msgspec

from rcc.domain.errors import DomainError
from rcc.service.commands import ExpireLot
from rcc.service.stripe_inbox import execute_retrying
from rcc.service.ticking import tick_until_stopped
from rcc.store.lot_expiries import due_expiries, mark_done

log = logging.getLogger("rcc.expiry")

Clock = Callable[[], datetime]


def expiry_key(wallet_id: str, lot: str) -> str:
    """The idempotency key of one lot's expiry."""
    return f"expire:{wallet_id}:{lot}"


class Expired(msgspec.Struct, frozen=True, kw_only=True):
    wallet_id: str
    lot: str
    expired_rcc: int
    replayed: bool = False


class ExpiryScheduler:
    """Expires due lots: `tick()` once, or `run()` until `stop()`."""

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
        """Finish the lot in hand and return from `run()`."""
        self.stop_event.set()

    async def tick(self) -> list[Expired]:
        """Expire every lot due by now (one batch), soonest first."""
        async with self.pool.acquire() as conn:
            due = await due_expiries(conn, self.clock(), self.batch_size)
        results = []
        for wallet_id, lot in due:
            if self.stop_event.is_set():
                break
            results.append(await self._expire(wallet_id, lot))
        return results

    async def _expire(self, wallet_id: str, lot: str) -> Expired:
        done = await execute_retrying(
            self.pool,
            ExpireLot(wallet_id=wallet_id, lot=lot),
            metadata={"actor": "scheduler"},
            idempotency_key=expiry_key(wallet_id, lot),
        )
        async with self.pool.acquire() as conn:
            await mark_done(conn, wallet_id, lot)
        if isinstance(done, DomainError):
            log.warning("lot %s of wallet %s not expired: %s", lot, wallet_id, done.detail)
            return Expired(wallet_id=wallet_id, lot=lot, expired_rcc=0)
        amount = int(done.result["expired_rcc"])
        log.info("lot %s of wallet %s: %s RCC expired", lot, wallet_id, amount)
        return Expired(wallet_id=wallet_id, lot=lot, expired_rcc=amount, replayed=done.replayed)

    async def run(self) -> None:
        """Tick until stopped; a full batch ticks again at once, errors back off."""
        await tick_until_stopped(
            self.tick,
            self.stop_event,
            name="expiry",
            interval_s=self.interval_s,
            batch_size=self.batch_size,
            max_backoff_s=30.0,
        )
