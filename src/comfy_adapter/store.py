"""The adapter's own tables (schema/0006_adapter.sql): dispatch rows and heartbeat.

`JobFeed` is the adapter as a follower of the log (rcc.follower): each batch folds the
job events into `adapter_jobs` in the transaction that moves its checkpoint (in
`follower_checkpoints`, named by `feed_name`), so a crash keeps a batch whole or not
at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from rcc.domain.events import (
    JobCancelled,
    JobCreated,
    JobFailed,
    JobPromptLost,
    JobPromptSubmitted,
    JobQueued,
    JobStarted,
    JobSucceeded,
)
from rcc.follower.decoding import Decoded
from rcc.store.workflows import load_workflows

OPEN = ("created", "queued", "running")
TERMINAL = ("succeeded", "failed", "cancelled")
_STATUS_OF: dict[type, str] = {
    JobCreated: "created",
    JobQueued: "queued",
    JobStarted: "running",
    JobSucceeded: "succeeded",
    JobFailed: "failed",
    JobCancelled: "cancelled",
}
_FOLLOWED = frozenset((*_STATUS_OF, JobPromptSubmitted, JobPromptLost))


@dataclass
class JobRow:
    """What the adapter knows about one job."""

    job_id: str
    position: int
    job_type: str
    workflow: dict[str, Any] | None
    status: str
    backend: str | None = None
    prompt_id: str | None = None
    client_id: str | None = None
    submitted_at: datetime | None = None
    cleaned_up: bool = False
    workflow_digest: str = ""  # the stored body's name, when the event did not embed it
    user_id: str = ""
    attempt: int = 1  # the submission attempt (a prompt lost by ComfyUI starts the next)
    started_at: datetime | None = None  # ComfyUI's execution_start
    required_tags: list[str] = field(default_factory=list)  # its template's (h15)
    payer: str = ""  # the wallet charged: the fair order's turns are per payer
    priority: int = 0  # the plan priority recorded at creation (rcc/queue_order.py)


@dataclass
class Change:
    """One job's changes in a batch; `row` is set when the job was created in it."""

    job_id: str
    row: JobRow | None = None
    status: str | None = None
    backend: str | None = None
    prompt_id: str | None = None
    client_id: str | None = None
    submitted_at: datetime | None = None
    attempt: int | None = None
    cleared: bool = False  # the prompt was lost: the fields above replace, not patch
    started_at: datetime | None = None


def feed_name(adapter_name: str) -> str:
    """The adapter's row in follower_checkpoints (schema/0010 moved it there)."""
    return f"adapter:{adapter_name}"


@dataclass(frozen=True)
class JobFeed:
    """The adapter's follower of the log: job events into `adapter_jobs`."""

    name: str

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Decoded]) -> None:
        """Write this batch's job changes (in the batch's transaction)."""
        await _write(conn, list(changes_of(events).values()))


def changes_of(events: Sequence[Decoded]) -> dict[str, Change]:
    """Each job's changes in a batch of events (other events are not the adapter's)."""
    changes: dict[str, Change] = {}
    for record, event in events:
        if type(event) not in _FOLLOWED:
            continue
        job_id: str = event.job_id  # type: ignore[attr-defined]
        change = changes.setdefault(job_id, Change(job_id))
        _fold(change, event, record.position, record.recorded_at)
    return changes


def _fold(change: Change, event: Any, position: int, at: datetime) -> None:
    if isinstance(event, JobCreated):
        change.row = JobRow(
            job_id=event.job_id,
            position=position,
            job_type=event.job_type,
            workflow=dict(event.workflow),
            status="created",
            workflow_digest=event.workflow_digest,
            user_id=event.user_id,
            required_tags=list(event.required_tags),
            payer=event.wallet_id,
            priority=event.queue_priority,
        )
    if isinstance(event, JobPromptLost):
        change.backend = change.prompt_id = change.client_id = change.submitted_at = None
        change.attempt, change.cleared = event.attempt, True
    if isinstance(event, JobStarted):
        change.started_at = at
    if isinstance(event, JobPromptSubmitted):
        change.backend, change.prompt_id, change.client_id = (
            event.backend,
            event.prompt_id,
            event.client_id,
        )
        change.submitted_at = at
    status = _STATUS_OF.get(type(event))
    if status is not None:
        change.status = status
    if change.row is not None:  # created in this batch: keep the new row whole
        row = change.row
        row.status = change.status or row.status
        row.backend = change.backend or row.backend
        row.prompt_id = change.prompt_id or row.prompt_id
        row.client_id = change.client_id or row.client_id
        row.submitted_at = change.submitted_at or row.submitted_at
        row.attempt = change.attempt or row.attempt
        row.started_at = change.started_at or row.started_at
        if change.cleared and change.prompt_id is None:
            row.backend = row.prompt_id = row.client_id = row.submitted_at = None
        if row.status in TERMINAL:
            row.workflow = None


async def fill_workflows(conn: asyncpg.Connection, rows: list[JobRow]) -> None:
    """Give open jobs created by digest their stored workflow body (old events embed it)."""
    named = [r for r in rows if r.workflow == {} and r.workflow_digest]
    if named:
        bodies = await load_workflows(conn, [r.workflow_digest for r in named])
        for row in named:
            row.workflow = bodies.get(row.workflow_digest, {})


async def _write(conn: asyncpg.Connection, changes: list[Change]) -> None:
    new = [c.row for c in changes if c.row is not None]
    await fill_workflows(conn, new)
    if new:
        await conn.execute(
            """INSERT INTO adapter_jobs (job_id, position, job_type, workflow, status, backend,
                                         prompt_id, client_id, submitted_at, user_id,
                                         attempt, started_at, required_tags, payer, priority)
               SELECT job_id, position, job_type, workflow, status, backend, prompt_id,
                      client_id, submitted_at, user_id, attempt, started_at,
                      -- a job's tags travel as one JSON array each (unnest flattens arrays)
                      ARRAY(SELECT jsonb_array_elements_text(tags)), payer, priority
                 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::jsonb[],
                             $5::text[], $6::text[], $7::text[], $8::text[],
                             $9::timestamptz[], $10::text[], $11::int[],
                             $12::timestamptz[], $13::jsonb[], $14::text[], $15::int[])
                   AS n(job_id, position, job_type, workflow, status, backend, prompt_id,
                        client_id, submitted_at, user_id, attempt, started_at, tags, payer,
                        priority)
               ON CONFLICT (job_id) DO NOTHING""",
            [r.job_id for r in new],
            [r.position for r in new],
            [r.job_type for r in new],
            [None if r.workflow is None else msgspec.json.encode(r.workflow).decode() for r in new],
            [r.status for r in new],
            [r.backend for r in new],
            [r.prompt_id for r in new],
            [r.client_id for r in new],
            [r.submitted_at for r in new],
            [r.user_id for r in new],
            [r.attempt for r in new],
            [r.started_at for r in new],
            [msgspec.json.encode(r.required_tags).decode() for r in new],
            [r.payer for r in new],
            [r.priority for r in new],
        )
    patches = [c for c in changes if c.row is None]
    if patches:
        await conn.execute(
            """UPDATE adapter_jobs a
                  SET status = COALESCE(p.status, a.status),
                      backend = CASE WHEN p.cleared THEN p.backend
                                     ELSE COALESCE(p.backend, a.backend) END,
                      prompt_id = CASE WHEN p.cleared THEN p.prompt_id
                                       ELSE COALESCE(p.prompt_id, a.prompt_id) END,
                      client_id = CASE WHEN p.cleared THEN p.client_id
                                       ELSE COALESCE(p.client_id, a.client_id) END,
                      submitted_at = CASE WHEN p.cleared THEN p.submitted_at
                                          ELSE COALESCE(p.submitted_at, a.submitted_at) END,
                      attempt = COALESCE(p.attempt, a.attempt),
                      started_at = COALESCE(p.started_at, a.started_at),
                      workflow = CASE WHEN p.status IN ('succeeded', 'failed', 'cancelled')
                                      THEN NULL ELSE a.workflow END,
                      updated_at = now()
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                             $6::timestamptz[], $7::int[], $8::bool[], $9::timestamptz[])
                      AS p(job_id, status, backend, prompt_id, client_id, submitted_at,
                           attempt, cleared, started_at)
                WHERE a.job_id = p.job_id""",
            [c.job_id for c in patches],
            [c.status for c in patches],
            [c.backend for c in patches],
            [c.prompt_id for c in patches],
            [c.client_id for c in patches],
            [c.submitted_at for c in patches],
            [c.attempt for c in patches],
            [c.cleared for c in patches],
            [c.started_at for c in patches],
        )


_ROW = """SELECT job_id, position, job_type, workflow, status, backend, prompt_id, client_id,
                 submitted_at, cleaned_up, user_id, attempt, started_at, required_tags
            FROM adapter_jobs"""


async def open_jobs(conn: asyncpg.Connection) -> list[JobRow]:
    """Jobs that have not ended, oldest first."""
    rows = await conn.fetch(f"{_ROW} WHERE status = ANY($1::text[]) ORDER BY position", list(OPEN))
    return [JobRow(**dict(r)) for r in rows]


async def uncleaned_jobs(conn: asyncpg.Connection) -> list[JobRow]:
    """Ended jobs whose prompt may still be on a backend (to delete or interrupt it)."""
    rows = await conn.fetch(
        f"""{_ROW} WHERE prompt_id IS NOT NULL AND NOT cleaned_up
                     AND status = ANY($1::text[]) ORDER BY position""",
        list(TERMINAL),
    )
    return [JobRow(**dict(r)) for r in rows]


async def job_row(conn: asyncpg.Connection, job_id: str) -> JobRow | None:
    row = await conn.fetchrow(f"{_ROW} WHERE job_id = $1", job_id)
    return JobRow(**dict(row)) if row else None


async def mark_cleaned(conn: asyncpg.Connection, job_ids: list[str]) -> None:
    await conn.execute(
        "UPDATE adapter_jobs SET cleaned_up = true WHERE job_id = ANY($1::text[])", job_ids
    )


async def write_status(
    conn: asyncpg.Connection, name: str, backends: list[dict[str, object]], reason: str
) -> None:
    """The heartbeat: the backends' state and why queued jobs wait."""
    await conn.execute(
        """INSERT INTO adapter_status (name, heartbeat_at, backends, waiting_reason)
           VALUES ($1, now(), $2, $3)
           ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), backends = $2,
                                            waiting_reason = $3""",
        name,
        msgspec.json.encode(backends).decode(),
        reason,
    )
