"""GPU pool handlers: a backend lost a job's prompt, so the job gets its next attempt.

The routing table is at the bottom (merged into `handlers.HANDLERS`).
"""

from __future__ import annotations

from typing import Any

from rcc.domain import job as jobs
from rcc.domain.errors import DomainError, IllegalTransition, NotFound
from rcc.domain.events import JobPromptLost, job_stream
from rcc.service import commands as c
from rcc.store.unit_of_work import UnitOfWork


async def record_prompt_lost(
    cmd: c.RecordPromptLost, uow: UnitOfWork
) -> dict[str, Any] | DomainError:
    """Forget the lost prompt so the job can be submitted again. Only the prompt that is
    recorded can be lost: a second adapter reporting the same loss learns the attempt
    already started (and must not start another)."""
    stream = job_stream(cmd.job_id)
    head = (await uow.lock(stream))[stream]
    job = head.as_state(jobs.JobState)
    if not job.status:
        return NotFound(detail="job not found")
    if job.status in jobs.TERMINAL:
        return IllegalTransition(
            detail=f"a {job.status} job is not submitted again",
            status=job.status,
            requested="resubmit",
        )
    if job.prompt_id != cmd.prompt_id:
        return {"attempt": job.attempt, "new": False}
    event = JobPromptLost(
        job_id=cmd.job_id,
        backend=job.backend,
        prompt_id=cmd.prompt_id,
        attempt=job.attempt + 1,
        reason=cmd.reason,
    )
    uow.stage(stream, head.version, [event], jobs.evolve(job, event))
    return {"attempt": event.attempt, "new": True}


POOL_HANDLERS: dict[type[c.Command], Any] = {
    c.RecordPromptLost: record_prompt_lost,
}
