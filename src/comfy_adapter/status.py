"""Why a queued job waits, as the portal shows it (`waiting_reason` in a job's metadata).

The adapter writes a heartbeat row every few seconds with its backends' state and a
sentence for waiting jobs; a heartbeat older than STALE_AFTER means no adapter runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

STALE_AFTER = timedelta(seconds=30)
NOT_RUNNING = "the ComfyUI adapter is not running (start `rcc adapter` or `rcc serve`)"


async def waiting_reason(conn: asyncpg.Connection, now: datetime | None = None) -> str:
    """One sentence: why jobs that are created or queued do not run yet."""
    row = await conn.fetchrow(
        """SELECT heartbeat_at, waiting_reason, now() AS db_now FROM adapter_status
            ORDER BY heartbeat_at DESC LIMIT 1"""
    )
    if row is None:
        return NOT_RUNNING
    current = now or row["db_now"]
    if current - row["heartbeat_at"] > STALE_AFTER:
        return NOT_RUNNING
    return str(row["waiting_reason"] or "waiting for a free ComfyUI backend")
