"""Admin pages for policies and plans (h6): every key with its bounds and values by
scope, the plans side by side with their limits, and one form that PUTs a change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar import Request, get
from litestar.datastructures import State
from litestar.response import Template

from portal.pages.base import admin, render
from rcc.config import Settings
from rcc.policy import KEYS, current_book
from rcc.policy.book import scope_values
from rcc.policy.plans import PlanLimits, plan_table

PLAN_KEYS = ("limits.daily_rcc", "jobs.max_running", "jobs.max_queued", "price.IMAGE_TASK",
             "price.VIDEO_TASK")  # fmt: skip


async def plan_comparison(conn: asyncpg.Connection, settings: Settings) -> list[PlanLimits]:
    """The plans with their limits now (the buy page's comparison table)."""
    book = await current_book(conn)
    return plan_table(book, settings.catalog, settings.max_running_jobs_per_user)


@get("/app/admin/policies")
async def policies(request: Request[Any, Any, Any], state: State) -> Template:
    viewer = await admin(request)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        book = await current_book(conn)
    now = datetime.now(UTC)
    rows = [
        {
            "key": key,
            "values": sorted(scope_values(book, key.name, now).values(), key=lambda e: e.scope),
            "scheduled": [e for e in book.entries if e.key == key.name and e.effective_at > now],
        }
        for key in (KEYS[name] for name in sorted(KEYS))
    ]
    recent = list(reversed(book.entries))[:20]
    return render(
        request, "admin/policies.html", viewer, nav="admin", sub="policies", rows=rows,
        recent=recent, keys=sorted(KEYS),
    )  # fmt: skip


@get("/app/admin/plans")
async def plans(request: Request[Any, Any, Any], state: State) -> Template:
    viewer = await admin(request)
    settings: Settings = state.settings
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        table = await plan_comparison(conn, settings)
    return render(
        request, "admin/plans.html", viewer, nav="admin", sub="plans", plans=table,
        keys=PLAN_KEYS,
    )  # fmt: skip


handlers = [policies, plans]
