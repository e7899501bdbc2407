"""The log as projectors read it: the commit-safe order of `event_store.read_all`.

Same rule as read_all (only transactions older than pg_snapshot_xmin, ordered by
(tx_id, position)), with two differences that matter at replay scale: the ORDER BY
names the table's columns, so PostgreSQL walks the (tx_id, position) index and stops
after `limit` rows (an ORDER BY on the output alias `tx_id`, the text-cast bigint,
sorts every event after the checkpoint instead), and the hash, which no projection
reads, is not fetched.
"""

from __future__ import annotations

import asyncpg

from rcc.store.event_store import Checkpoint, RecordedEvent

_READ = """SELECT e.position, e.tx_id::text::bigint AS tx, e.stream_id, e.version, e.type,
                  e.data, e.metadata, e.recorded_at
             FROM events e
            WHERE (e.tx_id, e.position) > ($1::text::xid8, $2)
              AND e.tx_id < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY e.tx_id, e.position
            LIMIT $3"""


async def read_batch(
    conn: asyncpg.Connection, after: Checkpoint, limit: int
) -> list[RecordedEvent]:
    """Up to `limit` events after `after`, in commit-safe order."""
    rows = await conn.fetch(_READ, str(after.tx_id), after.position, limit)
    return [
        RecordedEvent(
            position=r["position"],
            tx_id=r["tx"],
            stream_id=r["stream_id"],
            version=r["version"],
            type=r["type"],
            data=r["data"],
            metadata=r["metadata"],
            recorded_at=r["recorded_at"],
        )
        for r in rows
    ]
