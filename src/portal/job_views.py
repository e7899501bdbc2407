"""One job view everywhere: POST /jobs, GET /jobs, GET /jobs/{id}, cancel and the admin
list answer the same `JobView` for the same job, built by `projections.queries.job_view`.

What the read model cannot know is added here the same way for all of them: why a job
that is created or queued does not run yet (`waiting_reason`, from the adapter's
heartbeat row and its queue; null once it runs or has ended), with `queue_position` and
`estimated_start_at` while it waits for a GPU.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from portal.job_templates import with_templates
from projections.job_waiting import waiting_reasons
from projections.queries import job_view
from projections.queue_view import standings
from projections.views import JobView, Page

WAITING = ("created", "queued")


def created_job_view(
    result: dict[str, Any], *, user_id: str, job_type: str, created_at: datetime | None
) -> JobView:
    """The view of a job POST /jobs just created, from the command's answer: what the
    read model will hold for it once the projector has caught up."""
    return job_view(
        {
            "id": str(result["job_id"]),
            "user_id": user_id,
            "type": job_type,
            "cost_rcc": int(result["cost_rcc"]),
            "status": "created",
            "duration_ms": None,
            "output_uris": [],
            "error": None,
            "metadata": {},  # POST /jobs sets no job metadata (JobCreated.metadata)
            "created_at": created_at or datetime.now(UTC),
            "started_at": None,
            "ended_at": None,
            "queued_at": None,
            "bypass": bool(result["bypass"]),
            "backend": None,
            "prompt_id": None,
            "held_rcc": 0 if result["bypass"] else int(result["cost_rcc"]),
            "charged_rcc": 0,
        }
    )


async def with_waiting_reason(pool: asyncpg.Pool, job: JobView) -> JobView:
    """The job with `waiting_reason` filled in while it waits."""
    [shown] = await _with_reasons(pool, [job])
    return shown


async def page_with_waiting_reasons(pool: asyncpg.Pool, page: Page[JobView]) -> Page[JobView]:
    """A page of jobs, each with `waiting_reason` filled in while it waits."""
    return msgspec.structs.replace(page, items=await _with_reasons(pool, page.items))


async def _with_reasons(pool: asyncpg.Pool, jobs: list[JobView]) -> list[JobView]:
    jobs = await with_templates(pool, jobs)  # h4: which template and version each ran
    if not any(job.status in WAITING for job in jobs):
        return jobs  # nothing waits: no need to ask about the adapter
    async with pool.acquire() as conn:
        found = await standings(conn, [job.id for job in jobs if job.status in WAITING])
        reasons = await waiting_reasons(conn)
    shown = []
    for job in jobs:
        if job.status not in WAITING:
            shown.append(job)
            continue
        standing = found.get(job.id)
        shown.append(
            msgspec.structs.replace(
                job,
                waiting_reason=standing.waiting_reason if standing else reasons.of(job.type),
                queue_position=standing.queue_position if standing else None,
                estimated_start_at=standing.estimated_start_at if standing else None,
            )
        )
    return shown
