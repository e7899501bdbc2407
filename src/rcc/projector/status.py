"""`rcc projections status`: where each projection is and how far behind the log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from rcc.store.event_store import Checkpoint


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    checkpoint: Checkpoint
    lag_events: int  # committed events after the checkpoint
    lag_seconds: float  # age of the oldest of them (0 when caught up)
    updated_at: datetime
    rebuilt_at: datetime | None


async def status(
    conn: asyncpg.Connection, names: Sequence[str] | None = None
) -> list[ProjectionStatus]:
    """Checkpoint and lag of each projection (all of them when `names` is None)."""
    rows = await conn.fetch(
        """SELECT name, tx_id::text::bigint AS tx_id, position, updated_at, rebuilt_at
             FROM projection_checkpoints
            WHERE $1::text[] IS NULL OR name = ANY($1::text[])
            ORDER BY name""",
        None if names is None else list(names),
    )
    lags: dict[Checkpoint, tuple[int, float]] = {}
    found = []
    for row in rows:
        at = Checkpoint(row["tx_id"], row["position"])
        if at not in lags:
            lags[at] = await _lag(conn, at)
        count, seconds = lags[at]
        found.append(
            ProjectionStatus(row["name"], at, count, seconds, row["updated_at"], row["rebuilt_at"])
        )
    return found


async def _lag(conn: asyncpg.Connection, at: Checkpoint) -> tuple[int, float]:
    row = await conn.fetchrow(
        """SELECT count(*) AS events,
                  COALESCE(extract(epoch FROM clock_timestamp() - min(recorded_at)), 0)::float8
                      AS seconds
             FROM events WHERE (tx_id, position) > ($1::text::xid8, $2)""",
        str(at.tx_id),
        at.position,
    )
    return int(row["events"]), max(0.0, float(row["seconds"]))
