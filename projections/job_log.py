"""A job's log as the owner and admins read it (GET /jobs/{id}/logs, the job page): the
job's own stream as one timeline, its lifecycle events (`source: rcc`) and the lines the
adapter recorded (`JobExecutionLogged`: `source: comfyui` and `adapter`), oldest first.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from rcc.domain.events import (
    JobCancelled,
    JobCreated,
    JobExecutionLogged,
    JobFailed,
    JobPromptSubmitted,
    JobQueued,
    JobStarted,
    JobSucceeded,
    job_stream,
)
from rcc.store.event_store import read_stream


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    at: datetime
    source: str  # rcc (the job's lifecycle), adapter, or comfyui
    kind: str
    message: str
    node: str | None = None


class JobLog(msgspec.Struct, frozen=True, kw_only=True):
    job_id: str
    prompt_id: str | None
    backend: str | None
    lines: list[LogLine]


def _lifecycle(event: Any) -> tuple[str, str] | None:
    match event:
        case JobCreated():
            return "created", f"{event.job_type} created, {event.cost_rcc} RCC reserved"
        case JobQueued():
            return "queued", "queued for a ComfyUI backend"
        case JobPromptSubmitted():
            return "submitted", f"submitted to {event.backend} as prompt {event.prompt_id}"
        case JobStarted():
            return "running", "running on ComfyUI"
        case JobSucceeded():
            shown = f" in {event.duration_ms} ms" if event.duration_ms is not None else ""
            return "succeeded", f"succeeded{shown} with {len(event.output_uris)} output(s)"
        case JobFailed():
            return "failed", f"failed: {event.error}"
        case JobCancelled():
            return "cancelled", f"cancelled by {event.actor or 'the owner'}"
    return None


async def job_log(conn: asyncpg.Connection, job_id: str) -> JobLog:
    """A job's timeline from its own stream: lifecycle events and the execution log."""
    lines: list[LogLine] = []
    prompt_id = backend = None
    for record in await read_stream(conn, job_stream(job_id)):
        try:
            event = record.decode()
        except msgspec.ValidationError:
            continue
        if isinstance(event, JobExecutionLogged):
            lines.extend(
                LogLine(at=x.at, source=x.source, kind=x.kind, message=x.message, node=x.node)
                for x in event.lines
            )
            continue
        if isinstance(event, JobPromptSubmitted):
            prompt_id, backend = event.prompt_id, event.backend
        found = _lifecycle(event)
        if found is not None:
            lines.append(
                LogLine(at=record.recorded_at, source="rcc", kind=found[0], message=found[1])
            )
    lines.sort(key=lambda line: line.at)
    return JobLog(job_id=job_id, prompt_id=prompt_id, backend=backend, lines=lines)
