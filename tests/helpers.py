"""Small helpers the tests share: registering funded users and snapshotting tables."""

from __future__ import annotations

from typing import Any

import asyncpg

from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done

LEDGER_TABLES = ("events", "streams", "idempotency_keys", "user_emails", "api_tokens")


async def funded_user(
    pool: asyncpg.Pool, balance: int, *, email: str | None = None, admin: bool = False
) -> str:
    """A registered user whose wallet holds `balance` RCC (a top-up grant)."""
    import uuid

    done = await execute(
        pool, c.RegisterUser(email=email or f"{uuid.uuid4().hex[:10]}@example.com", is_admin=admin)
    )
    assert isinstance(done, Done), done
    user_id = str(done.result["user_id"])
    if balance:
        granted = await execute(pool, c.GrantCredits(user_id=user_id, kind="topup", amount=balance))
        assert isinstance(granted, Done), granted
    return user_id


async def balance_of(conn: asyncpg.Connection, user_id: str) -> int:
    """The wallet balance summed from the ledger events alone."""
    from rcc.domain.events import LedgerEvent, decode_event

    rows = await conn.fetch(
        "SELECT type, data FROM events WHERE stream_id = $1 ORDER BY version", f"wallet-{user_id}"
    )
    total = 0
    for row in rows:
        event = decode_event(row["type"], row["data"])
        if isinstance(event, LedgerEvent):
            total += event.delta
    return total


async def snapshot(conn: asyncpg.Connection) -> dict[str, list[Any]]:
    """Every row of every ledger table, to prove a refused command changed nothing."""
    return {
        table: [tuple(r) for r in await conn.fetch(f"SELECT * FROM {table} ORDER BY 1")]
        for table in LEDGER_TABLES
    }


# The job lifecycle as the product defines it, written in the tests rather than imported
# from the code under test: a job is created, may be queued, runs, and ends once
# (succeeded, failed or cancelled); it may fail or be cancelled from any unfinished
# status, and nothing follows an end.
JOB_LIFECYCLE: dict[str, frozenset[str]] = {
    "created": frozenset({"queued", "running", "failed", "cancelled"}),
    "queued": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"succeeded", "failed", "cancelled"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
