"""The log chain (schema/0009): one link per event in commit order, written after commit.

The append function cannot chain the global log: the order of two concurrent
transactions is only final once both have committed. So the chain is extended
afterwards over commit-safe reads (event_store.read_all's order and horizon), by
`rcc audit anchor` and the anchor worker, a batch per transaction.
"""

from __future__ import annotations

import asyncpg
import msgspec

from rcc.store.hashing import GENESIS, log_link

_LOCK = 0x72636368  # "rcch": one extender at a time (the worker and the command may race)


class ChainHead(msgspec.Struct, frozen=True, kw_only=True):
    """Where the chain ends: event number `events`, its position and transaction."""

    events: int = 0
    position: int = 0
    tx_id: int = 0
    chain: bytes = GENESIS


# The ORDER BY names the table's columns (e.tx_id, not the bigint output column of the
# same name), so PostgreSQL walks the (tx_id, position) index and stops at the limit.
_NEXT = """SELECT e.position, e.tx_id::text::bigint AS tx_id, e.hash FROM events e
            WHERE (e.tx_id, e.position) > ($1::text::xid8, $2)
              AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY e.tx_id, e.position LIMIT $3"""


async def chain_head(conn: asyncpg.Connection) -> ChainHead:
    """The last link written (the genesis head when the chain is empty)."""
    row = await conn.fetchrow(
        "SELECT seq, position, tx_id, chain FROM log_chain ORDER BY seq DESC LIMIT 1"
    )
    if row is None:
        return ChainHead()
    return ChainHead(
        events=row["seq"], position=row["position"], tx_id=row["tx_id"], chain=bytes(row["chain"])
    )


async def extend_chain(conn: asyncpg.Connection, *, batch: int = 10_000) -> ChainHead:
    """Chain every commit-safe event not chained yet; return the new head.

    The cost grows with what is new: it starts from the last stored link.
    """
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            head = await chain_head(conn)
            rows = await conn.fetch(_NEXT, str(head.tx_id), head.position, batch)
            if not rows:
                return head
            links = []
            seq, chain = head.events, head.chain
            for row in rows:
                seq += 1
                chain = log_link(chain, seq, row["position"], row["tx_id"], bytes(row["hash"]))
                links.append((seq, row["position"], row["tx_id"], chain))
            await conn.copy_records_to_table(
                "log_chain", records=links, columns=["seq", "position", "tx_id", "chain"]
            )
