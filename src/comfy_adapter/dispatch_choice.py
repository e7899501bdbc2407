"""Which waiting job goes to which backend next, with tag requirements.

The oldest waiting job whose required tags (rcc.domain.backend_tags) some backend with
a free slot carries goes first; a job no free backend can serve is passed over, so a
video job waiting for a `video` backend does not hold up the image jobs behind it.
"""

from __future__ import annotations

from collections.abc import Mapping

from comfy_adapter.backends import Backend, BackendPool
from comfy_adapter.store import JobRow
from rcc.domain.backend_tags import required_tags

JobTypeTags = Mapping[str, frozenset[str]]


def next_dispatch(
    pending: Mapping[str, JobRow], pool: BackendPool, by_type: JobTypeTags
) -> tuple[JobRow, Backend] | None:
    """The next (job, backend) pair, oldest job first; None when nothing can go now."""
    if not any(b.free > 0 for b in pool.backends):
        return None
    for row in pending.values():
        backend = pool.choose(required_tags(row.job_type, by_type))
        if backend is not None:
            return row, backend
    return None
