"""Credits: the balance, a 30-day consumption chart and the ledger with filters."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromQuery
from litestar.response import Template

from portal.consistency import caught_up
from portal.pages import charts, reads
from portal.pages.base import member, render
from portal.pages.format import REASONS
from portal.pages.jobs import known
from portal.pages.lots import lots_panel
from projections import queries
from rcc.config import Settings

PAGE_SIZE = 50
CHART_DAYS = 30


def parse_day(text: str | None) -> date | None:
    """A YYYY-MM-DD from a date input, or None (an unreadable date is no filter)."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def day_start(day: date | None) -> datetime | None:
    return None if day is None else datetime.combine(day, datetime.min.time(), UTC)


@get("/app/credits")
async def credits(
    request: Request[Any, Any, Any],
    state: State,
    reason: FromQuery[str | None] = None,
    since: FromQuery[str | None] = None,
    until: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Template:
    viewer = await member(request)
    assert viewer.user_id is not None
    settings: Settings = state.settings
    await caught_up(state.pool, viewer.user_id, ["ledger", "lots"], settings.read_wait_s)
    reason = known(reason, REASONS)
    first, last = parse_day(since), parse_day(until)
    end = day_start(last + timedelta(days=1)) if last else None  # `until` day included
    days = reads.last_days(CHART_DAYS)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        page = await queries.ledger_page(
            conn,
            viewer.user_id,
            reason=reason,
            since=day_start(first),
            until=end,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
        used = await reads.consumption_per_day(conn, viewer.user_id, days)
        lots = await lots_panel(conn, viewer.user_id)
    chart = charts.bar_chart(
        used, title=f"RCC used per day, last {CHART_DAYS} days", what="RCC used"
    )
    return render(
        request,
        "credits.html",
        viewer,
        nav="credits",
        page=page,
        reason=reason,
        since=first.isoformat() if first else "",
        until=last.isoformat() if last else "",
        cursor=cursor,
        reasons=REASONS,
        chart=chart,
        used_total=sum(v for _, v in used),
        chart_days=CHART_DAYS,
        lots=lots,
    )


handlers = [credits]
