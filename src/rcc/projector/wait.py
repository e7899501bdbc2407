"""Read-your-writes: wait until projections have applied a command's events.

`execute` returns the checkpoint of the command's last event. Because projectors apply
the log in (tx_id, position) order and a command's events share one transaction, a
projection whose checkpoint is at or past that one reflects the whole command. The
portal calls `wait_for` after a command and before answering reads that must show it
(see docs/PROJECTIONS.md); the wait is bounded, and a timeout is reported, not raised.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import asyncpg

from rcc.store.event_store import Checkpoint

FIRST_DELAY = 0.002
MAX_DELAY = 0.05


async def projected(
    conn: asyncpg.Connection, checkpoint: Checkpoint, projection_names: Sequence[str]
) -> bool:
    """Have all these projections applied the event at `checkpoint`?"""
    passed = await conn.fetchval(
        """SELECT count(*) FROM projection_checkpoints
            WHERE name = ANY($1::text[]) AND (tx_id, position) >= ($2::text::xid8, $3)""",
        list(projection_names),
        str(checkpoint.tx_id),
        checkpoint.position,
    )
    return int(passed) == len(set(projection_names))


async def wait_for(
    pool: asyncpg.Pool,
    checkpoint: Checkpoint,
    projection_names: Sequence[str],
    timeout: float = 2.0,  # noqa: ASYNC109 - the bound is the API: a timeout is an answer
) -> bool:
    """Wait (at most `timeout` seconds) until the projections reflect `checkpoint`.

    True when they do; False on timeout, so the caller can still answer (and say the
    read may be stale) instead of failing a request whose command has committed.
    An empty checkpoint (a command that wrote nothing) is reflected at once.
    """
    if checkpoint == Checkpoint() or not projection_names:
        return True
    deadline = time.monotonic() + timeout
    delay = FIRST_DELAY
    while True:
        async with pool.acquire() as conn:
            if await projected(conn, checkpoint, projection_names):
                return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, MAX_DELAY)
