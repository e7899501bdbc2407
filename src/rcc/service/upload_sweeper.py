"""Expired uploads: a clocked worker deletes their files once their time has passed.

An upload is kept `RCC_UPLOAD_TTL_S` (docs/TEMPLATES.md); after that no new job may
name it (a 404), so its bytes in `$RCC_DATA_DIR/uploads/<id>` only take room. Each tick
deletes the files of expired uploads not yet swept, soonest expired first, and records
each in `upload_sweeps` (schema/0024) so the next tick does not look at it again. The
`uploads` row and the `upload_stored` event stay as history. Deleting a file that is
already gone is fine, so two sweepers (two portals, or a tick and an upload's own
sweep) never trip over each other.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path

import asyncpg

from rcc.service.due_work import Clock, DueWorker, utc_now

log = logging.getLogger("rcc.uploads")

SWEEP_INTERVAL_S = 30.0  # an expired file may outlive its time by about this long


def uploads_dir(data_dir: Path) -> Path:
    """Where uploaded files are kept: one file per upload, named by its id."""
    return data_dir / "uploads"


async def expired_unswept(conn: asyncpg.Connection, now: datetime, limit: int) -> list[str]:
    """Ids of uploads expired by `now` whose file has not been deleted, soonest first."""
    rows = await conn.fetch(
        """SELECT u.id FROM uploads u
            WHERE u.expires_at <= $1
              AND NOT EXISTS (SELECT 1 FROM upload_sweeps s WHERE s.upload_id = u.id)
            ORDER BY u.expires_at, u.id LIMIT $2""",
        now,
        limit,
    )
    return [r["id"] for r in rows]


class UploadSweeper(DueWorker[str, str]):
    """Deletes the files of expired uploads: `tick()` once, or `run()` until `stop()`."""

    name = "upload-sweeper"

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        directory: Path,
        clock: Clock = utc_now,
        interval_s: float = SWEEP_INTERVAL_S,
        batch_size: int = 200,
        stop_event: asyncio.Event | None = None,
    ) -> None:
        super().__init__(
            pool, clock=clock, interval_s=interval_s, batch_size=batch_size, stop_event=stop_event
        )
        self.directory = directory

    async def due(self, conn: asyncpg.Connection, now: datetime, limit: int) -> list[str]:
        """Expired uploads whose file is still to be deleted."""
        return await expired_unswept(conn, now, limit)

    async def handle(self, row: str) -> str:
        """Delete one upload's file, then record it swept (a crash between the two only
        means the next tick deletes nothing twice)."""
        (self.directory / row).unlink(missing_ok=True)
        async with self.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO upload_sweeps (upload_id, deleted_at) VALUES ($1, $2)
                   ON CONFLICT (upload_id) DO NOTHING""",
                row,
                self.clock(),
            )
        log.info("upload %s expired: its file is deleted", row)
        return row
