"""Fixed-window rate limits kept in PostgreSQL, so every portal process shares them."""

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
    hits = await conn.fetchval(
        """INSERT INTO rate_limits (bucket, window_start, hits) VALUES ($1, to_timestamp($2), 1)
           ON CONFLICT (bucket, window_start) DO UPDATE SET hits = rate_limits.hits + 1
           RETURNING hits""",
        bucket,
        float(start),
    )
    if hits > limit.hits:
        return max(1, math.ceil(start + limit.window_s - now))
    return None


async def forget_old(conn: asyncpg.Connection) -> None:
    """Drop windows older than a day (called now and then; old rows only cost space)."""
    await conn.execute("DELETE FROM rate_limits WHERE window_start < now() - interval '1 day'")
