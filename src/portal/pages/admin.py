"""Admin pages: the dashboard (KPIs and charts), users, jobs and the operations log.

Every handler starts with `admin(request)`: a visitor is sent to sign-in, a plain
user gets the 403 page. They live under /app/admin, apart from the /admin JSON API."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import asyncpg
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromQuery, QueryParameter
from litestar.response import Template

from portal.pages import charts, reads
from portal.pages.base import admin, render
from portal.pages.credits import day_start, parse_day
from portal.pages.format import JOB_TYPES, STATUSES
from portal.pages.jobs import known
from projections import queries

CHART_DAYS = 30
PAGE_SIZE = 50


def _pool(state: State) -> asyncpg.Pool:
    pool: asyncpg.Pool = state.pool
    return pool


@get("/app/admin")
async def dashboard(request: Request[Any, Any, Any], state: State) -> Template:
    viewer = await admin(request)
    days = reads.last_days(CHART_DAYS)
    async with _pool(state).acquire() as conn:
        kpis = await queries.dashboard(conn, days=CHART_DAYS)
        finished = await reads.finished_per_day(conn, days)
    failed, succeeded = finished.get("jobs_failed", {}), finished.get("jobs_succeeded", {})
    rates: list[tuple[Any, float | None]] = []
    for d in days:
        done = failed.get(d, 0) + succeeded.get(d, 0)
        rates.append((d, failed.get(d, 0) / done if done else None))
    jobs_chart = charts.bar_chart(
        [(p.day, p.value) for p in kpis.jobs_per_day], title="Jobs per day", what="jobs"
    )
    rcc_chart = charts.bar_chart(
        [(p.day, p.value) for p in kpis.rcc_debited_per_day],
        title="RCC debited per day",
        what="RCC",
    )
    rate_chart = charts.rate_chart(rates, title="Job failure rate per day")
    return render(
        request,
        "admin/dashboard.html",
        viewer,
        nav="admin",
        sub="dashboard",
        kpis=kpis,
        jobs_chart=jobs_chart,
        rcc_chart=rcc_chart,
        rate_chart=rate_chart,
        chart_days=CHART_DAYS,
    )


@get("/app/admin/users")
async def users(
    request: Request[Any, Any, Any],
    state: State,
    q: FromQuery[str | None] = None,
    admins: FromQuery[bool] = False,
    cursor: FromQuery[str | None] = None,
) -> Template:
    viewer = await admin(request)
    email = (q or "").strip() or None
    async with _pool(state).acquire() as conn:
        page = await queries.users_page(
            conn, email=email, is_admin=True if admins else None, cursor=cursor, limit=PAGE_SIZE
        )
    return render(
        request,
        "admin/users.html",
        viewer,
        nav="admin",
        sub="users",
        page=page,
        q=email or "",
        admins=admins,
        cursor=cursor,
        more=_more({"q": email, "admins": "true" if admins else None}, page.next_cursor),
    )


@get("/app/admin/jobs")
async def jobs(
    request: Request[Any, Any, Any],
    state: State,
    status: FromQuery[str | None] = None,
    kind: Annotated[str | None, QueryParameter(name="type")] = None,
    user: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Template:
    viewer = await admin(request)
    status, kind = known(status, STATUSES), known(kind, JOB_TYPES)
    user = (user or "").strip() or None
    first, last = parse_day(since), parse_day(until)
    async with _pool(state).acquire() as conn:
        page = await queries.jobs_page(
            conn,
            user_id=user,
            status=status,
            type=kind,
            since=day_start(first),
            until=day_start(last + timedelta(days=1)) if last else None,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
        owners = await reads.emails(conn, [j.user_id for j in page.items])
    filters = {
        "status": status,
        "type": kind,
        "user": user,
        "since": first.isoformat() if first else None,
        "until": last.isoformat() if last else None,
    }
    return render(
        request,
        "admin/jobs.html",
        viewer,
        nav="admin",
        sub="jobs",
        page=page,
        owners=owners,
        filters={k: v or "" for k, v in filters.items()},
        statuses=STATUSES,
        job_types=JOB_TYPES,
        cursor=cursor,
        more=_more(filters, page.next_cursor),
    )


@get("/app/admin/logs")
async def logs(
    request: Request[Any, Any, Any],
    state: State,
    action: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
    user: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Template:
    viewer = await admin(request)
    action, status = (action or "").strip() or None, (status or "").strip() or None
    user = (user or "").strip() or None
    first, last = parse_day(since), parse_day(until)
    start, end = day_start(first), day_start(last + timedelta(days=1)) if last else None
    async with _pool(state).acquire() as conn:
        page = await queries.logs_page(
            conn,
            user_id=user,
            action=action,
            status=status,
            since=start,
            until=end,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
        actions = await reads.log_actions(conn)
    filters = {
        "action": action,
        "status": status,
        "user": user,
        "since": first.isoformat() if first else None,
        "until": last.isoformat() if last else None,
    }
    # /admin/logs.csv takes the same filters, as timestamps (and no user filter).
    csv_query = {
        "action": action,
        "status": status,
        "since": start.isoformat() if start else None,
        "until": end.isoformat() if end else None,
    }
    return render(
        request,
        "admin/logs.html",
        viewer,
        nav="admin",
        sub="logs",
        page=page,
        filters={k: v or "" for k, v in filters.items()},
        actions=actions,
        cursor=cursor,
        more=_more(filters, page.next_cursor),
        csv_url="/admin/logs.csv" + _query(csv_query),
    )


def _query(values: dict[str, str | None]) -> str:
    kept = {k: v for k, v in values.items() if v}
    return f"?{urlencode(kept)}" if kept else ""


def _more(filters: dict[str, str | None], next_cursor: str | None) -> str | None:
    """The link to the next (older) page, keeping the filters."""
    if next_cursor is None:
        return None
    return _query({**filters, "cursor": next_cursor})


handlers = [dashboard, users, jobs, logs]
