"""Jobs claimed with leases: any number of adapters share `adapter_jobs` as one queue.

A claim runs in one transaction under a transaction-level advisory lock, so the claims
of all adapters are serialised: each one sees the slots the others hold (the per-backend
capacity is global, not per process), the per-user running limit holds across adapters,
and the fair order (queue_order.py) is kept. The lease is renewed by the holder's
heartbeat; a job whose lease ran out is taken over by whoever claims next, which asks
its backend about a recorded prompt before it submits anything (run.py).
"""

from __future__ import annotations

import hashlib
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from comfy_adapter.store import _ROW, OPEN, JobRow
from rcc.domain.backend_tags import required_tags
from rcc.queue_order import FAIR_ORDER, WAITING_ORDER

CLAIM_LOCK = int.from_bytes(hashlib.sha256(b"rcc.adapter:claim").digest()[:8], "big", signed=True)
# A slot is held by a job with a recorded prompt, or by one claimed under a live lease.
HOLDS_SLOT = "(prompt_id IS NOT NULL OR lease_expires_at > now())"


@dataclass(frozen=True)
class Instance:
    """One adapter process: its id, where it runs and its own websocket client id."""

    id: str
    host: str
    pid: int
    client_id: str

    @staticmethod
    def new() -> Instance:
        """A fresh identity for this process (a restart is a new instance)."""
        host, pid = socket.gethostname(), os.getpid()
        return Instance(f"{host}:{pid}:{uuid.uuid4().hex[:8]}", host, pid, uuid.uuid4().hex)


@dataclass
class Claimed:
    """What one claim handed to this adapter."""

    new: list[tuple[JobRow, str]] = field(default_factory=list)  # with their backend
    adopted: list[JobRow] = field(default_factory=list)  # recorded prompts to reconcile


async def register(conn: asyncpg.Connection, me: Instance) -> None:
    """Announce this adapter (GET /admin/adapters lists it)."""
    await conn.execute(
        """INSERT INTO adapter_instances (id, host, pid, client_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()""",
        me.id,
        me.host,
        me.pid,
        me.client_id,
    )


async def heartbeat(
    conn: asyncpg.Connection, me: Instance, held: list[str], lease_s: float
) -> dict[str, str]:
    """Renew the leases of the jobs this adapter runs; their statuses, by job id. A job
    missing from the answer is no longer ours (its lease ran out and was taken)."""
    async with conn.transaction():
        rows = await conn.fetch(
            """UPDATE adapter_jobs
                  SET lease_expires_at = now() + make_interval(secs => $3)
                WHERE lease_owner = $1 AND job_id = ANY($2::text[])
            RETURNING job_id, status""",
            me.id,
            held,
            lease_s,
        )
        await conn.execute(
            "UPDATE adapter_instances SET heartbeat_at = now(), jobs_held = $2 WHERE id = $1",
            me.id,
            len(rows),
        )
    return {r["job_id"]: r["status"] for r in rows}


async def release(conn: asyncpg.Connection, me: Instance, job_id: str) -> None:
    """The run is over: give up the lease and the slot, and take the job's status from
    its stream (the fold may lag), so nobody takes over a job that has ended."""
    await conn.execute(
        """UPDATE adapter_jobs a
              SET lease_owner = NULL, lease_expires_at = NULL, slot_backend = NULL,
                  status = CASE WHEN s.state->>'status' IN ('succeeded', 'failed', 'cancelled')
                                THEN s.state->>'status' ELSE a.status END
             FROM streams s
            WHERE a.job_id = $1 AND a.lease_owner = $2 AND s.stream_id = 'job-' || a.job_id""",
        job_id,
        me.id,
    )


async def retire(conn: asyncpg.Connection, me: Instance) -> None:
    """A clean stop: the leases go at once (another adapter takes over without waiting)."""
    await conn.execute(
        """UPDATE adapter_jobs SET lease_expires_at = now() WHERE lease_owner = $1""", me.id
    )
    await conn.execute("DELETE FROM adapter_instances WHERE id = $1", me.id)


async def claim(
    conn: asyncpg.Connection,
    me: Instance,
    *,
    capacity: Mapping[str, int],
    max_running: int,
    lease_s: float,
    tags: Mapping[str, frozenset[str]] | None = None,
    job_type_tags: Mapping[str, frozenset[str]] | None = None,
) -> Claimed:
    """Take over jobs whose lease ran out, then claim waiting jobs for the free slots of
    `capacity` (healthy backends and their slots), in the fair order, each user within
    their `jobs.max_running` policy (`max_running`: where none is set). A job goes only to
    a backend with every tag its type requires (`job_type_tags`, docs/BACKENDS.md); one
    no free backend can serve is passed over, not in the way of the jobs behind it."""
    claimed = Claimed()
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", CLAIM_LOCK)
        adopted = await conn.fetch(
            """UPDATE adapter_jobs SET lease_owner = $1,
                       lease_expires_at = now() + make_interval(secs => $2)
                 WHERE job_id IN (
                       SELECT job_id FROM adapter_jobs
                        WHERE status = ANY($3::text[]) AND prompt_id IS NOT NULL
                          AND (lease_owner IS NULL OR lease_expires_at <= now())
                        ORDER BY position LIMIT 200)
             RETURNING job_id""",
            me.id,
            lease_s,
            list(OPEN),
        )
        if adopted:
            rows = await conn.fetch(
                f"{_ROW} WHERE job_id = ANY($1::text[]) ORDER BY position",
                [r["job_id"] for r in adopted],
            )
            claimed.adopted = [JobRow(**dict(r)) for r in rows]
        free = await _free_slots(conn, capacity)
        wanted = sum(free.values())
        if wanted == 0:
            return claimed
        rows = await conn.fetch(
            # Each user's policy limit, else the adapter's (RCC_MAX_RUNNING_JOBS_PER_USER).
            f"{WAITING_ORDER} WHERE held + rank <= COALESCE(running_limit, $1)"
            f" ORDER BY {FAIR_ORDER} LIMIT $2",
            max_running,
            wanted,
        )
        if not rows:
            return claimed
        offered, by_type = tags or {}, job_type_tags or {}
        chosen = [
            (r["job_id"], url)
            for r in rows
            if (url := _take(free, _required(r, by_type), offered)) is not None
        ]
        if not chosen:
            return claimed
        found = await conn.fetch(
            """WITH c AS (SELECT * FROM unnest($1::text[], $2::text[]) AS c(job_id, backend))
                UPDATE adapter_jobs a SET lease_owner = $3, slot_backend = c.backend,
                       claimed_at = clock_timestamp(),
                       lease_expires_at = now() + make_interval(secs => $4)
                  FROM c WHERE a.job_id = c.job_id
             RETURNING a.job_id""",
            [j for j, _ in chosen],
            [b for _, b in chosen],
            me.id,
            lease_s,
        )
        taken = {r["job_id"] for r in found}
        rows = await conn.fetch(f"{_ROW} WHERE job_id = ANY($1::text[])", [j for j in taken])
        by_id: dict[str, Any] = {r["job_id"]: r for r in rows}
        claimed.new = [(JobRow(**dict(by_id[j])), b) for j, b in chosen if j in by_id]
    return claimed


async def _free_slots(conn: asyncpg.Connection, capacity: Mapping[str, int]) -> dict[str, int]:
    """Each backend's slots less those held by any adapter's jobs."""
    used = await conn.fetch(
        f"""SELECT COALESCE(slot_backend, backend) AS slot_backend, count(*) AS n
              FROM adapter_jobs
             WHERE status = ANY($1::text[]) AND {HOLDS_SLOT}
               AND COALESCE(slot_backend, backend) = ANY($2::text[])
             GROUP BY COALESCE(slot_backend, backend)""",
        list(OPEN),
        list(capacity),
    )
    held = {r["slot_backend"]: int(r["n"]) for r in used}
    return {url: max(0, slots - held.get(url, 0)) for url, slots in capacity.items()}


def _required(row: Mapping[str, Any], by_type: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """A waiting job's tags: its type's (RCC_JOB_TYPE_TAGS) and its template's (h15)."""
    return required_tags(row["job_type"], by_type, extra=row["required_tags"])


def _take(
    free: dict[str, int], required: frozenset[str], offered: Mapping[str, frozenset[str]]
) -> str | None:
    """The backend with the most free slots (the first of equals) that offers every
    `required` tag, one slot less; None when none has a free slot and the tags."""
    fitting = [u for u in free if free[u] > 0 and required <= offered.get(u, frozenset())]
    if not fitting:
        return None
    url = max(fitting, key=lambda u: free[u])
    free[url] -= 1
    return url
