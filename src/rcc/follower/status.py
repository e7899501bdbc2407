"""`rcc projections status` and /readyz: where each follower is, how far behind the
log, and whether it stands blocked before an event type its version does not know."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from rcc.follower.checkpoints import Kind
from rcc.follower.decoding import Blocked
from rcc.store.event_store import Checkpoint


@dataclass(frozen=True)
class FollowerStatus:
    name: str
    kind: str  # "projection" or "subscriber"
    checkpoint: Checkpoint
    lag_events: int  # committed events after the checkpoint
    lag_seconds: float  # age of the oldest of them (0 when caught up)
    updated_at: datetime
    rebuilt_at: datetime | None
    blocked: str | None = None  # "blocked at position P: unknown event type X — ..."
    blocked_since: datetime | None = None


async def status(conn: asyncpg.Connection, kind: Kind | None = None) -> list[FollowerStatus]:
    """Checkpoint, lag and blocked state of each follower (of one kind, or all)."""
    rows = await conn.fetch(
        """SELECT name, kind, tx_id::text::bigint AS tx_id, position, updated_at, rebuilt_at,
                  blocked_tx_id::text::bigint AS blocked_tx_id, blocked_position,
                  blocked_type, blocked_since
             FROM follower_checkpoints
            WHERE $1::text IS NULL OR kind = $1
            ORDER BY kind, name""",
        kind,
    )
    lags: dict[Checkpoint, tuple[int, float]] = {}
    found = []
    for row in rows:
        at = Checkpoint(row["tx_id"], row["position"])
        if at not in lags:
            lags[at] = await _lag(conn, at)
        count, seconds = lags[at]
        blocked = None
        if row["blocked_type"] is not None:
            where = Checkpoint(row["blocked_tx_id"], row["blocked_position"])
            blocked = str(Blocked(where, row["blocked_type"]))
        found.append(
            FollowerStatus(
                row["name"],
                row["kind"],
                at,
                count,
                seconds,
                row["updated_at"],
                row["rebuilt_at"],
                blocked,
                row["blocked_since"],
            )
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
