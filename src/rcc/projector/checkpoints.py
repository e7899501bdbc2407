"""Per-projection checkpoints, and the lock that lets one process apply a projection.

The lock is a transaction-level advisory lock per projection, taken with a try at the
start of every batch: a second projector process skips a projection that is busy
instead of waiting, and a process that dies (even `kill -9`) loses its locks with its
connection. Correctness does not rest on the lock alone: the checkpoint is read after
the lock is held and written in the same transaction as the rows, so a batch either
lands with its checkpoint or not at all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import asyncpg

from rcc.store.event_store import Checkpoint

# Projectors announce each committed batch here (the payload is the new checkpoint);
# waiters and the benchmark listen, nobody has to.
PROJECTED_CHANNEL = "rcc_projected"


def lock_key(name: str) -> int:
    """A stable 64-bit advisory lock key for a projection name."""
    digest = hashlib.sha256(f"rcc.projection:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def ensure(conn: asyncpg.Connection, names: Sequence[str]) -> None:
    """Create missing checkpoint rows (at position 0) for these projections."""
    await conn.execute(
        """INSERT INTO projection_checkpoints (name)
           SELECT unnest($1::text[]) ON CONFLICT (name) DO NOTHING""",
        list(names),
    )


async def try_lock(conn: asyncpg.Connection, names: Sequence[str]) -> list[str]:
    """Take the batch lock of every projection that is free; return their names.

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
    """Wait for the batch locks of these projections (in a fixed order), for replay's swap."""
    for name in sorted(names):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(name))


async def load(conn: asyncpg.Connection, names: Sequence[str]) -> dict[str, Checkpoint]:
    """The stored checkpoints of these projections (missing rows are left out)."""
    rows = await conn.fetch(
        """SELECT name, tx_id::text::bigint AS tx_id, position FROM projection_checkpoints
            WHERE name = ANY($1::text[])""",
        list(names),
    )
    return {r["name"]: Checkpoint(r["tx_id"], r["position"]) for r in rows}


async def save(
    conn: asyncpg.Connection, names: Sequence[str], checkpoint: Checkpoint, *, rebuilt: bool = False
) -> None:
    """Move these projections to `checkpoint` and announce it (both land at commit)."""
    await conn.execute(
        """UPDATE projection_checkpoints
              SET tx_id = $2::text::xid8, position = $3, updated_at = now(),
                  rebuilt_at = CASE WHEN $4 THEN now() ELSE rebuilt_at END
            WHERE name = ANY($1::text[])""",
        list(names),
        str(checkpoint.tx_id),
        checkpoint.position,
        rebuilt,
    )
    await conn.execute(
        "SELECT pg_notify($1, $2)", PROJECTED_CHANNEL, f"{checkpoint.tx_id}:{checkpoint.position}"
    )
