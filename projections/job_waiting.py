"""Why a queued job waits, as the portal shows it (`waiting_reason` in a job's view).

The adapter writes a heartbeat row (`adapter_status`) every few seconds with its
backends' state and a sentence for waiting jobs, plus a sentence per job type whose
required tags no live backend carries (docs/BACKENDS.md); a heartbeat older than
STALE_AFTER means no adapter runs. The portal reads it here, never from the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import asyncpg
import msgspec

from rcc.domain.backend_tags import reason_key

STALE_AFTER = timedelta(seconds=30)
NOT_RUNNING = "the ComfyUI adapter is not running (start `rcc adapter` or `rcc serve`)"
WAITING = "waiting for a free ComfyUI backend"


class WaitingReasons(msgspec.Struct, frozen=True, kw_only=True):
    """The pool-wide reason, and the reasons of job types whose tags no backend meets."""

    general: str
    by_type: dict[str, str] = msgspec.field(default_factory=dict)

    def of(self, job_type: str | None, tags: Sequence[str] = ()) -> str:
        """The sentence for a job of `job_type` whose template requires `tags` (the
        pool-wide one when none fits better)."""
        if job_type is None or self.general != WAITING:
            return self.general
        for key in (reason_key(job_type, tags), job_type):
            if key in self.by_type:
                return self.by_type[key]
        return self.general


async def waiting_reasons(conn: asyncpg.Connection, now: datetime | None = None) -> WaitingReasons:
    """Why jobs that are created or queued do not run yet, from the freshest heartbeat."""
    row = await conn.fetchrow(
        """SELECT heartbeat_at, waiting_reason, type_reasons, now() AS db_now
             FROM adapter_status ORDER BY heartbeat_at DESC LIMIT 1"""
    )
    if row is None:
        return WaitingReasons(general=NOT_RUNNING)
    current = now or row["db_now"]
    if current - row["heartbeat_at"] > STALE_AFTER:
        return WaitingReasons(general=NOT_RUNNING)
    return WaitingReasons(
        general=str(row["waiting_reason"] or WAITING), by_type=dict(row["type_reasons"] or {})
    )


async def waiting_reason(
    conn: asyncpg.Connection, now: datetime | None = None, job_type: str | None = None
) -> str:
    """One sentence: why a job (of `job_type`, when given) that waits does not run yet."""
    return (await waiting_reasons(conn, now)).of(job_type)
