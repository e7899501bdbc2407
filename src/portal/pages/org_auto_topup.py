"""The organisation's auto top-up page (h14): the user's page (auto_topup.html, the
same billing.js) pointed at /orgs/{id}/auto-topup and the org's customer portal; for
its owner and admins."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Template

from portal.pages.base import member, render
from portal.pages.orgs import managed_org_page
from rcc.autotopup import store as topups
from rcc.config import Settings


@get("/app/orgs/{org_id:str}/auto-topup")
async def org_auto_topup(
    request: Request[Any, Any, Any], state: State, org_id: FromPath[str]
) -> Template:
    viewer = await member(request)
    org = await managed_org_page(state, viewer, org_id)
    settings: Settings = state.settings
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        chosen = await topups.setting(conn, org_id)
        declines = await topups.declines_in_a_row(conn, org_id)
    return render(
        request,
        "auto_topup.html",
        viewer,
        nav="orgs",
        org=org,
        chosen=chosen,
        declines=declines,
        packs=settings.catalog.packs,
        payments_ready=bool(settings.stripe_secret_key),
        api=f"/orgs/{org_id}/auto-topup",
        portal_api=f"/orgs/{org_id}/billing/portal",
        back=f"/app/orgs/{org_id}/credits",
        whose="the organisation's",
        has_customer=bool(org.stripe_customer),
    )


handlers = [org_auto_topup]
