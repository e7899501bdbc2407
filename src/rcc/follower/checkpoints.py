"""Per-follower checkpoints, and the lock that lets one process apply a follower.

Every follower of the log (each projection, the adapter) has one row in
`follower_checkpoints` (schema/0010_one_follower.sql). The lock is a transaction-level
advisory lock per follower, taken with a try at the start of every batch: a second
process skips a follower that is busy instead of waiting, and a process that dies
(even `kill -9`) loses its locks with its connection. Correctness does not rest on the
lock alone: the checkpoint is read after the lock is held and written in the same
transaction as the follower's rows, so a batch either lands with its checkpoint or
not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Literal

import asyncpg

from rcc.follower.decoding import Blocked
from rcc.store.event_store import Checkpoint

# Followers announce each committed batch here (the payload is the new checkpoint);
# waiters and the benchmark listen, nobody has to.
PROJECTED_CHANNEL = "rcc_projected"

Kind = Literal["projection", "subscriber"]


def lock_key(name: str) -> int:
    """A stable 64-bit advisory lock key for a follower name.

    The prefix predates the adapter's joining the runtime; it stays, so processes of
    the previous version and this one exclude each other during a rolling deploy."""
    digest = hashlib.sha256(f"rcc.projection:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def ensure(conn: asyncpg.Connection, names: Sequence[str], kind: Kind = "projection") -> None:
    """Create missing checkpoint rows (at position 0) for these followers."""
    await conn.execute(
        """INSERT INTO follower_checkpoints (name, kind)
           SELECT unnest($1::text[]), $2 ON CONFLICT (name) DO NOTHING""",
        list(names),
        kind,
    )


async def try_lock(conn: asyncpg.Connection, names: Sequence[str]) -> list[str]:
    """Take the batch lock of every follower that is free; return their names.

    Must run inside a transaction: the locks end with it.
    """
    rows = await conn.fetch(
        """SELECT name FROM unnest($1::text[], $2::bigint[]) AS t(name, key)
            WHERE pg_try_advisory_xact_lock(key)""",
        list(names),
        [lock_key(n) for n in names],
    )
    return [r["name"] for r in rows]


async def lock(conn: asyncpg.Connection, names: Sequence[str]) -> None:
    """Wait for the batch locks of these followers (in a fixed order), for replay's swap."""
    for name in sorted(names):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(name))


async def load(conn: asyncpg.Connection, names: Sequence[str]) -> dict[str, Checkpoint]:
    """The stored checkpoints of these followers (missing rows are left out)."""
    rows = await conn.fetch(
        """SELECT name, tx_id::text::bigint AS tx_id, position FROM follower_checkpoints
            WHERE name = ANY($1::text[])""",
        list(names),
    )
    return {r["name"]: Checkpoint(r["tx_id"], r["position"]) for r in rows}


async def save(
    conn: asyncpg.Connection, names: Sequence[str], checkpoint: Checkpoint, *, rebuilt: bool = False
) -> None:
    """Move these followers to `checkpoint` and announce it (both land at commit).

    Moving on clears a blocked mark: a newer version got past the event that stopped
    an older one (a new blocked mark, if any, is written after this in the batch)."""
    await conn.execute(
        """UPDATE follower_checkpoints
              SET tx_id = $2::text::xid8, position = $3, updated_at = now(),
                  rebuilt_at = CASE WHEN $4 THEN now() ELSE rebuilt_at END,
                  blocked_tx_id = NULL, blocked_position = NULL, blocked_type = NULL,
                  blocked_since = NULL
            WHERE name = ANY($1::text[])""",
        list(names),
        str(checkpoint.tx_id),
        checkpoint.position,
        rebuilt,
    )
    await conn.execute(
        "SELECT pg_notify($1, $2)", PROJECTED_CHANNEL, f"{checkpoint.tx_id}:{checkpoint.position}"
    )


async def mark_blocked(conn: asyncpg.Connection, names: Sequence[str], blocked: Blocked) -> None:
    """Record that these followers stopped before an event of a type they do not know
    (`blocked_since` keeps the first time they met that event)."""
    await conn.execute(
        """UPDATE follower_checkpoints
              SET blocked_since = CASE WHEN blocked_position IS DISTINCT FROM $3
                                       THEN now() ELSE blocked_since END,
                  blocked_tx_id = $2::text::xid8, blocked_position = $3, blocked_type = $4
            WHERE name = ANY($1::text[])""",
        list(names),
        str(blocked.checkpoint.tx_id),
        blocked.checkpoint.position,
        blocked.type,
    )
