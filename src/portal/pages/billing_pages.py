"""Pages for outbound webhooks (admins: endpoints, deliveries, dead letters, redeliver)
and auto top-up (users: the settings and the Stripe customer portal). Their buttons
call the JSON API from billing.js."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Template

from portal.pages.base import admin, member, render
from rcc.autotopup import store as topups
from rcc.config import Settings
from rcc.webhooks import store as hooks
from rcc.webhooks.messages import TYPES

PAGE_SIZE = 50


@get("/app/admin/webhooks")
async def webhooks(request: Request[Any, Any, Any], state: State) -> Template:
    viewer = await admin(request)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        endpoints = await hooks.list_endpoints(conn, None, 200)
        dead = await hooks.list_deliveries(conn, None, "dead", None, PAGE_SIZE)
    return render(
        request,
        "admin/webhooks.html",
        viewer,
        nav="admin",
        sub="webhooks",
        endpoints=endpoints,
        dead=dead,
        types=TYPES,
    )


@get("/app/admin/webhooks/{endpoint_id:str}")
async def webhook_deliveries(
    request: Request[Any, Any, Any], state: State, endpoint_id: FromPath[str]
) -> Template:
    viewer = await admin(request)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        endpoints = {e.id: e for e in await hooks.list_endpoints(conn, None, 200)}
        deliveries = await hooks.list_deliveries(conn, endpoint_id, None, None, PAGE_SIZE)
    return render(
        request,
        "admin/webhook_deliveries.html",
        viewer,
        nav="admin",
        sub="webhooks",
        endpoint=endpoints.get(endpoint_id),
        endpoint_id=endpoint_id,
        deliveries=deliveries,
    )


@get("/app/auto-topup")
async def auto_topup(request: Request[Any, Any, Any], state: State) -> Template:
    viewer = await member(request)
    assert viewer.user_id is not None
    settings: Settings = state.settings
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        chosen = await topups.setting(conn, viewer.user_id)
        declines = await topups.declines_in_a_row(conn, viewer.user_id)
    return render(
        request,
        "auto_topup.html",
        viewer,
        nav="credits",
        chosen=chosen,
        declines=declines,
        packs=settings.catalog.packs,
        payments_ready=bool(settings.stripe_secret_key),
    )


handlers = [webhooks, webhook_deliveries, auto_topup]
