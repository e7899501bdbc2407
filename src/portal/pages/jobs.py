"""Jobs (live status, duration, cost) and one job (outputs, log, refund)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

import asyncpg
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Template

from portal.consistency import caught_up
from portal.job_templates import with_templates
from portal.pages import reads
from portal.pages.base import PageRefused, member, render
from portal.pages.format import JOB_TYPES, STATUSES, UNFINISHED
from projections import queries
from projections.job_log import job_log
from projections.job_waiting import waiting_reason
from rcc.config import Settings

PAGE_SIZE = 25


def known(value: str | None, allowed: Any) -> str | None:
    """A filter value from the query string, or None when it is not one we know."""
    return value if value in allowed else None


@get("/app/jobs")
async def jobs(
    request: Request[Any, Any, Any],
    state: State,
    status: FromQuery[str | None] = None,
    kind: Annotated[str | None, QueryParameter(name="type")] = None,
    cursor: FromQuery[str | None] = None,
) -> Template:
    viewer = await member(request)
    assert viewer.user_id is not None
    settings: Settings = state.settings
    await caught_up(state.pool, viewer.user_id, ["jobs"], settings.read_wait_s)
    status, kind = known(status, STATUSES), known(kind, JOB_TYPES)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        page = await queries.jobs_page(
            conn, user_id=viewer.user_id, status=status, type=kind, cursor=cursor, limit=PAGE_SIZE
        )
    return render(
        request,
        "jobs.html",
        viewer,
        nav="jobs",
        page=page,
        status=status,
        kind=kind,
        cursor=cursor,
        statuses=STATUSES,
        job_types=JOB_TYPES,
        # What the page's script polls (GET /jobs) to keep the first page live.
        live_query=urlencode(
            {
                "limit": PAGE_SIZE,
                **({"status": status} if status else {}),
                **({"type": kind} if kind else {}),
            }
        ),
    )


@get("/app/jobs/{job_id:str}")
async def job(request: Request[Any, Any, Any], state: State, job_id: FromPath[str]) -> Template:
    viewer = await member(request)
    assert viewer.user_id is not None
    settings: Settings = state.settings
    await caught_up(state.pool, viewer.user_id, ["jobs", "ledger"], settings.read_wait_s)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        found = await queries.job(conn, job_id, viewer.user_id)
        if found is None:  # someone else's job looks exactly like no job
            raise PageRefused(404, "No such job", "There is no job with that id.", viewer)
        log = await job_log(conn, job_id)
        refunded = await reads.released_for_job(conn, viewer.user_id, job_id)
        waiting = (
            await waiting_reason(conn, job_type=found.type)
            if found.status in ("created", "queued")
            else None
        )
    [found] = await with_templates(pool, [found])  # h4: the template and version it ran
    return render(
        request,
        "job.html",
        viewer,
        nav="jobs",
        job=found,
        log=log,
        refunded=refunded,
        waiting=waiting,
        unfinished=found.status in UNFINISHED,
    )


handlers = [jobs, job]
