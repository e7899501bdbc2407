"""Where a waiting job stands, for the portal: its place in line, an estimate of when
it starts, and why it waits (a public interface over the adapter's tables).

- `queue_position` (1 = next) follows the dispatch order (queue_order.py) over every
  job that waits for a GPU.
- `estimated_start_at` = now + the rounds ahead of it (position / slots of the healthy
  backends) times the recent average run time; null while no backend is healthy.
- A job already handed to ComfyUI waits in ComfyUI's own queue, and says so; a job on a
  backend that does not answer says that instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import msgspec

from projections.job_waiting import WAITING, waiting_reasons
from rcc.queue_order import FAIR_ORDER, WAITING_ORDER

DEFAULT_RUN_S = 30.0  # the estimate's run time before any job has finished


@dataclass(frozen=True)
class Standing:
    """One waiting job's place in line and why it waits."""

    waiting_reason: str
    queue_position: int | None = None
    estimated_start_at: datetime | None = None


class _Backend(msgspec.Struct):
    url: str
    healthy: bool = False
    slots: int = 0
    last_error: str = ""


async def standings(conn: asyncpg.Connection, job_ids: list[str]) -> dict[str, Standing]:
    """The standing of each of these jobs that waits (created or queued)."""
    reasons = await waiting_reasons(conn)
    rows = await conn.fetch(
        f"""WITH ordered AS ({WAITING_ORDER}),
                 line AS (SELECT job_id, row_number() OVER (
                                ORDER BY {FAIR_ORDER}) AS place
                            FROM ordered)
            SELECT a.job_id, a.job_type, a.required_tags, a.prompt_id, a.backend, line.place
              FROM adapter_jobs a LEFT JOIN line USING (job_id)
             WHERE a.job_id = ANY($1::text[]) AND a.status IN ('created', 'queued')""",
        job_ids,
    )
    backends = await _backends(conn)
    healthy_slots = sum(b.slots for b in backends.values() if b.healthy)
    run_s, now = await _recent_run_s(conn)
    found: dict[str, Standing] = {}
    for row in rows:
        if row["prompt_id"] is not None:
            found[row["job_id"]] = Standing(_on_backend(backends.get(row["backend"] or "")))
            continue
        place = row["place"]
        if place is None:  # claimed this instant: about to be submitted
            found[row["job_id"]] = Standing("being handed to a ComfyUI backend")
            continue
        start = None
        if healthy_slots:
            rounds = math.floor((int(place) - 1) / healthy_slots)
            start = now + timedelta(seconds=rounds * run_s)
        # a job type's (or its template's) missing tags say so
        general = reasons.of(row["job_type"], row["required_tags"] or ())
        # A reason that says why nothing can run (no adapter, no backend, none with the
        # job type's tags, all draining) beats the place in line.
        reason = (
            general if general != WAITING else f"waiting for a GPU: number {place} in the queue"
        )
        found[row["job_id"]] = Standing(reason, int(place), start)
    return found


def _on_backend(backend: _Backend | None) -> str:
    if backend is not None and not backend.healthy:
        return (
            f"the ComfyUI backend {backend.url} is unreachable ({backend.last_error}); "
            "the job continues when it answers"
        )
    where = f" {backend.url}" if backend is not None else ""
    return f"submitted to ComfyUI{where}; waiting in its queue for the GPU"


async def _backends(conn: asyncpg.Connection) -> dict[str, _Backend]:
    """The backends as the freshest adapter heartbeat saw them."""
    raw = await conn.fetchval(
        "SELECT backends FROM adapter_status ORDER BY heartbeat_at DESC LIMIT 1"
    )
    if raw is None:
        return {}
    listed = msgspec.json.decode(raw) if isinstance(raw, (str, bytes)) else raw
    backends = msgspec.convert(listed, list[_Backend], strict=False)
    return {b.url: b for b in backends}


async def _recent_run_s(conn: asyncpg.Connection) -> tuple[float, datetime]:
    """The average run of the last 100 finished jobs (submission to end), and now."""
    row = await conn.fetchrow(
        """SELECT avg(extract(epoch FROM updated_at - submitted_at))::float8 AS run_s,
                  now() AS now
             FROM (SELECT updated_at, submitted_at FROM adapter_jobs
                    WHERE status = 'succeeded' AND submitted_at IS NOT NULL
                    ORDER BY position DESC LIMIT 100) recent"""
    )
    run_s = row["run_s"] if row["run_s"] is not None else DEFAULT_RUN_S
    return max(float(run_s), 0.1), row["now"]
