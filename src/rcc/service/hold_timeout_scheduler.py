"""Hold timeouts: a worker that voids every service hold not settled by its time.

Durable schedule (`hold_timeouts`, written with the hold). A tick voids every open row
whose time has passed, soonest first, each under the key `hold-timeout:<id>`; the hold's
stream has the last word (an ended hold refuses another end), so any number of
schedulers void a hold exactly once. The row is closed in the transaction that ends
the hold, whoever ends it.
"""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg

from rcc.domain.errors import DomainError
from rcc.service.due_work import DueWorker
from rcc.service.hold_commands import VoidHold
from rcc.service.stripe_inbox import execute_retrying
from rcc.store.hold_timeouts import due_timeouts

log = logging.getLogger("rcc.holds")


def timeout_key(hold_id: str) -> str:
    """The idempotency key of one hold's timeout."""
    return f"hold-timeout:{hold_id}"


class HoldTimeoutScheduler(DueWorker[str, str]):
    """Voids holds whose timeout has come: `tick()` once, or `run()` until `stop()`."""

    name = "hold-timeout"

    async def due(self, conn: asyncpg.Connection, now: datetime, limit: int) -> list[str]:
        """Ids of open holds whose timeout has come, soonest first."""
        return await due_timeouts(conn, now, limit)

    async def handle(self, row: str) -> str:
        """Void one hold under its timeout key; an ended hold refuses, and that is fine."""
        done = await execute_retrying(
            self.pool,
            VoidHold(hold_id=row, service=None),
            metadata={"actor": "hold-timeout"},
            idempotency_key=timeout_key(row),
        )
        if isinstance(done, DomainError):
            log.info("hold %s not voided: %s", row, done.detail)
        return row
