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

import logging
from datetime import datetime

import asyncpg
import msgspec

from rcc.domain.errors import DomainError
from rcc.service.commands import ExpireLot
from rcc.service.due_work import DueWorker
from rcc.service.stripe_inbox import execute_retrying
from rcc.store.lot_expiries import due_expiries, mark_done

log = logging.getLogger("rcc.expiry")


def expiry_key(wallet_id: str, lot: str) -> str:
    """The idempotency key of one lot's expiry."""
    return f"expire:{wallet_id}:{lot}"


class Expired(msgspec.Struct, frozen=True, kw_only=True):
    wallet_id: str
    lot: str
    expired_rcc: int
    replayed: bool = False


class ExpiryScheduler(DueWorker[tuple[str, str], Expired]):
    """Expires due lots: `tick()` once, or `run()` until `stop()`."""

    name = "expiry"

    async def due(
        self, conn: asyncpg.Connection, now: datetime, limit: int
    ) -> list[tuple[str, str]]:
        """(wallet id, lot) of open expiries due by `now`, soonest first."""
        return await due_expiries(conn, now, limit)

    async def handle(self, row: tuple[str, str]) -> Expired:
        """Expire one lot under its key, then close its row."""
        wallet_id, lot = row
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
