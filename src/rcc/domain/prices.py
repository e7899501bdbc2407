"""The one price table: what each job type costs in RCC."""

from __future__ import annotations

JOB_PRICES_RCC: dict[str, int] = {
    "IMAGE_TASK": 1,
    "VIDEO_TASK": 5,
}


def job_cost(job_type: str) -> int | None:
    """The cost of a job type in whole RCC, or None for a type we do not sell."""
    return JOB_PRICES_RCC.get(job_type)
