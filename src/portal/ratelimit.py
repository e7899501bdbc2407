"""Rate limits kept in PostgreSQL, so every portal process shares them.

Counted in fixed windows, judged on a sliding estimate: this window's hits plus the
previous window's, weighted by how much of it the sliding window still covers. A burst
that straddles a window's edge is therefore not let through twice (a fixed window alone
would allow 2x the limit across the edge)."""

from __future__ import annotations

import math
import time

import asyncpg
import msgspec


class Limit(msgspec.Struct, frozen=True):
    hits: int
    window_s: int


async def hit(conn: asyncpg.Connection, bucket: str, limit: Limit) -> int | None:
    """Count one hit; return the seconds to wait when over the limit, else None."""
    now = time.time()
    start = math.floor(now / limit.window_s) * limit.window_s
    row = await conn.fetchrow(
        """WITH counted AS (
               INSERT INTO rate_limits (bucket, window_start, hits)
               VALUES ($1, to_timestamp($2), 1)
               ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1
               RETURNING hits)
           SELECT (SELECT hits FROM counted) AS hits,
                  COALESCE((SELECT hits FROM rate_limits
                             WHERE bucket = $1 AND window_start = to_timestamp($3)), 0)
                      AS previous""",
        bucket,
        float(start),
        float(start - limit.window_s),
    )
    covered = 1 - (now - start) / limit.window_s  # of the previous window, still in view
    if row["hits"] + row["previous"] * covered > limit.hits:
        return max(1, math.ceil(start + limit.window_s - now))
    return None


async def forget_old(conn: asyncpg.Connection) -> None:
    """Drop windows older than a day (called now and then; old rows only cost space)."""
    await conn.execute("DELETE FROM rate_limits WHERE window_start < now() - interval '1 day'")
