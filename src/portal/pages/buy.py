"""Buy: packs and plans (to Stripe Checkout), and the pages Stripe sends people back to.

The return page watches the credit arrive: the Buy page notes the newest ledger line
before leaving for Stripe, and the return page polls the ledger for grants after it
(or, opened elsewhere, for grants in the last hour)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import asyncpg
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import QueryParameter
from litestar.response import Template

from portal.pages import reads
from portal.pages.base import member, render
from portal.pages.policies import plan_comparison
from rcc.config import Settings

RECENT = timedelta(hours=1)


@get("/app/buy")
async def buy(
    request: Request[Any, Any, Any],
    state: State,
    welcome: Annotated[bool, QueryParameter(name="welcome")] = False,
) -> Template:
    viewer = await member(request)
    assert viewer.user_id is not None
    settings: Settings = state.settings
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        mark = await reads.last_ledger_id(conn, viewer.user_id)
        plans = await plan_comparison(conn, settings)  # h6
    return render(
        request,
        "buy.html",
        viewer,
        nav="buy",
        catalog=settings.catalog,
        payments_ready=bool(settings.stripe_secret_key),
        ledger_mark=mark,
        plans=plans,
        welcome=welcome,  # the first run: nothing to spend, no job yet
    )


# The paths Stripe Checkout returns to (rcc.service.checkout): pages, not API routes.
@get("/billing/success")
async def success(request: Request[Any, Any, Any]) -> Template:
    viewer = await member(request)
    since = datetime.now(UTC) - RECENT
    return render(request, "billing_return.html", viewer, nav="buy", outcome="success", since=since)


@get("/billing/cancel")
async def cancel(request: Request[Any, Any, Any]) -> Template:
    viewer = await member(request)
    return render(request, "billing_return.html", viewer, nav="buy", outcome="cancel", since=None)


handlers = [buy, success, cancel]
