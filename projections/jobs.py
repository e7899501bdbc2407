"""Jobs: the PRD's jobs table (status, timestamps, duration, outputs, error).

A job created in this batch is inserted whole; a job created earlier gets a patch.
The status follows the event with the highest job-stream version, and each timestamp
comes from its own event, so the row does not depend on how events fall into batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from rcc.domain.events import (
    JobCancelled,
    JobCreated,
    JobFailed,
    JobPromptSubmitted,
    JobQueued,
    JobStarted,
    JobSucceeded,
)
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "jobs"
TABLES = ("jobs",)

# The duration an event did not state: from start to end, in whole milliseconds.
_DURATION = "(extract(epoch FROM {ended} - {started}) * 1000)::bigint"


@dataclass
class JobChange:
    created: JobCreated | None = None
    created_at: datetime | None = None
    status: str | None = None
    version: int = 0
    queued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    backend: str | None = None
    prompt_id: str | None = None
    output_uris: list[str] | None = None
    error: str | None = None
    duration_ms: int | None = None

    def move(self, status: str, record: RecordedEvent) -> None:
        if record.version > self.version:
            self.status, self.version = status, record.version


@dataclass
class Batch:
    jobs: dict[str, JobChange] = field(default_factory=dict)

    def job(self, job_id: str) -> JobChange:
        return self.jobs.setdefault(job_id, JobChange())


def on_created(batch: Batch, event: JobCreated, record: RecordedEvent) -> None:
    job = batch.job(event.job_id)
    job.created, job.created_at = event, record.recorded_at
    job.move("created", record)


def on_queued(batch: Batch, event: JobQueued, record: RecordedEvent) -> None:
    job = batch.job(event.job_id)
    job.queued_at = record.recorded_at
    job.move("queued", record)


def on_prompt_submitted(batch: Batch, event: JobPromptSubmitted, record: RecordedEvent) -> None:
    """The adapter's backend and prompt id show before the job runs (the status stays)."""
    job = batch.job(event.job_id)
    job.backend, job.prompt_id = event.backend, event.prompt_id


def on_started(batch: Batch, event: JobStarted, record: RecordedEvent) -> None:
    job = batch.job(event.job_id)
    job.started_at, job.backend, job.prompt_id = record.recorded_at, event.backend, event.prompt_id
    job.move("running", record)


def on_succeeded(batch: Batch, event: JobSucceeded, record: RecordedEvent) -> None:
    job = batch.job(event.job_id)
    job.ended_at, job.output_uris = record.recorded_at, list(event.output_uris)
    job.duration_ms = event.duration_ms
    job.move("succeeded", record)


def on_failed(batch: Batch, event: JobFailed, record: RecordedEvent) -> None:
    job = batch.job(event.job_id)
    job.ended_at, job.error = record.recorded_at, event.error
    job.move("failed", record)


def on_cancelled(batch: Batch, event: JobCancelled, record: RecordedEvent) -> None:
    job = batch.job(event.job_id)
    job.ended_at = record.recorded_at
    job.move("cancelled", record)


_CHANGE_TYPES = (
    "$3::bigint[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], $7::text[],"
    " $8::text[], $9::jsonb[], $10::text[], $11::bigint[]"
)
_CHANGE_COLUMNS = (
    "version, queued_at, started_at, ended_at, backend, prompt_id, output_uris, error, duration_ms"
)


def _json(value: object) -> str | None:
    """JSON text for a jsonb[] parameter (a list element would read as an array dimension)."""
    return None if value is None else msgspec.json.encode(value).decode()


def _change_columns(changes: list[tuple[str, JobChange]]) -> list[list[Any]]:
    return [
        [job_id for job_id, _ in changes],
        [c.status for _, c in changes],
        [c.version for _, c in changes],
        [c.queued_at for _, c in changes],
        [c.started_at for _, c in changes],
        [c.ended_at for _, c in changes],
        [c.backend for _, c in changes],
        [c.prompt_id for _, c in changes],
        [_json(c.output_uris) for _, c in changes],
        [c.error for _, c in changes],
        [c.duration_ms for _, c in changes],
    ]


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    new = [(k, c) for k, c in batch.jobs.items() if c.created is not None]
    patches = [(k, c) for k, c in batch.jobs.items() if c.created is None]
    if new:
        created = [c.created for _, c in new if c.created is not None]
        duration = _DURATION.format(ended="j.ended_at", started="j.started_at")
        await conn.execute(
            f"""INSERT INTO jobs (id, status, {_CHANGE_COLUMNS}, user_id, wallet_id, type,
                                  cost_rcc, bypass, metadata, created_at)
                SELECT j.id, j.status, j.version, j.queued_at, j.started_at, j.ended_at,
                       j.backend, j.prompt_id, COALESCE(j.output_uris, '[]'::jsonb), j.error,
                       COALESCE(j.duration_ms, {duration}), j.user_id, j.wallet_id, j.type,
                       j.cost_rcc, j.bypass, j.metadata, j.created_at
                  FROM unnest($1::text[], $2::text[], {_CHANGE_TYPES}, $12::text[], $13::text[],
                              $14::text[], $15::int[], $16::bool[], $17::jsonb[],
                              $18::timestamptz[])
                       AS j(id, status, {_CHANGE_COLUMNS}, user_id, wallet_id, type, cost_rcc,
                            bypass, metadata, created_at)""",
            *_change_columns(new),
            [e.user_id for e in created],
            [e.wallet_id for e in created],
            [e.job_type for e in created],
            [e.cost_rcc for e in created],
            [e.bypass for e in created],
            [_json(e.metadata) for e in created],
            [c.created_at for _, c in new],
        )
    if patches:
        duration = _DURATION.format(
            ended="COALESCE(p.ended_at, j.ended_at)", started="COALESCE(p.started_at, j.started_at)"
        )
        await conn.execute(
            f"""UPDATE jobs j
                   SET status = CASE WHEN p.version > j.version THEN p.status ELSE j.status END,
                       version = GREATEST(j.version, p.version),
                       queued_at = COALESCE(p.queued_at, j.queued_at),
                       started_at = COALESCE(p.started_at, j.started_at),
                       ended_at = COALESCE(p.ended_at, j.ended_at),
                       backend = COALESCE(p.backend, j.backend),
                       prompt_id = COALESCE(p.prompt_id, j.prompt_id),
                       output_uris = COALESCE(p.output_uris, j.output_uris),
                       error = COALESCE(p.error, j.error),
                       duration_ms = COALESCE(p.duration_ms, j.duration_ms, {duration})
                  FROM unnest($1::text[], $2::text[], {_CHANGE_TYPES})
                       AS p(id, status, {_CHANGE_COLUMNS})
                 WHERE j.id = p.id""",
            *_change_columns(patches),
        )


HANDLERS: dict[type, Handler[Batch]] = {
    JobCreated: on_created,
    JobQueued: on_queued,
    JobPromptSubmitted: on_prompt_submitted,
    JobStarted: on_started,
    JobSucceeded: on_succeeded,
    JobFailed: on_failed,
    JobCancelled: on_cancelled,
}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
