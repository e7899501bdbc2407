"""The per-user job limits' environment defaults, below the `jobs.*` policies.

- queued: how many unfinished jobs a user may have; one more is refused at creation
  (429 `too_many_jobs` with Retry-After).
- running: how many of a user's jobs may hold a GPU slot at once; applied at dispatch,
  so further jobs simply wait their turn in the queue.
"""

from __future__ import annotations

from rcc.config import Settings

# What a refused creation suggests to wait before trying again: about one short job.
RETRY_AFTER_S = 10


def max_queued_jobs(settings: Settings) -> int:
    """How many unfinished jobs one user may have (RCC_MAX_QUEUED_JOBS_PER_USER)."""
    return settings.max_queued_jobs_per_user


def max_running_jobs(settings: Settings) -> int:
    """How many jobs of one user may run at once where no `jobs.max_running` policy
    applies (RCC_MAX_RUNNING_JOBS_PER_USER); the claim resolves the policy per user."""
    return settings.max_running_jobs_per_user
