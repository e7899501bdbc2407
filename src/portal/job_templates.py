"""Job views with the template (id, version, name) each job was built from."""

from __future__ import annotations

import asyncpg
import msgspec

from projections.templates import templates_of_jobs
from projections.views import JobView


async def with_templates(pool: asyncpg.Pool, jobs: list[JobView]) -> list[JobView]:
    """The jobs, each with `template` filled in when it was built from one."""
    if not jobs:
        return jobs
    async with pool.acquire() as conn:
        found = await templates_of_jobs(conn, [j.id for j in jobs])
    return [msgspec.structs.replace(j, template=found[j.id]) if j.id in found else j for j in jobs]
