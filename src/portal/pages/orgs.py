"""Organisation pages (issue 13): the list and creation, one org with its members'
usage against their budgets and the invitation form, its credits (ledger) and buy
pages, accepting an invitation, and the header's workspace switcher.

Like every page they only read; changes go to the JSON API from static/orgs.js."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar import Request, get
from litestar.datastructures import Cookie, State
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from portal.consistency import caught_up
from portal.pages.base import PageRefused, Viewer, member, render
from portal.pages.policies import plan_comparison
from portal.pages.workspaces import COOKIE
from projections import org_queries
from rcc.config import Settings
from rcc.domain import org as orgs
from rcc.domain import wallet as wallets
from rcc.service.org_reads import org_now

PAGE_SIZE = 50


async def _org(
    state: State, viewer: Viewer, org_id: str, *, managers_only: bool = False
) -> tuple[orgs.OrgState, wallets.WalletState, str]:
    """The org and the viewer's role; a 404 page for strangers, 403 for members where
    only the owner and admins may look."""
    assert viewer.user_id is not None
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        org, wallet = await org_now(conn, org_id)
    role = orgs.role_of(org, viewer.user_id)
    if role is None:
        raise PageRefused(404, "Not found", "There is no such organisation.", viewer)
    if managers_only and role not in orgs.MANAGERS:
        raise PageRefused(
            403, "Owners and admins only", "Ask an admin of the organisation.", viewer
        )
    return org, wallet, role


async def managed_org_page(state: State, viewer: Viewer, org_id: str) -> orgs.OrgState:
    """The org, for its owner and admins (h14: its auto top-up page)."""
    org, _, _ = await _org(state, viewer, org_id, managers_only=True)
    return org


@get("/app/orgs")
async def org_list(request: Request[Any, Any, Any]) -> Template:
    viewer = await member(request)
    choices = viewer.workspace.choices if viewer.workspace else []
    return render(request, "orgs/list.html", viewer, nav="orgs", choices=choices)


@get("/app/orgs/{org_id:str}")
async def org_page(
    request: Request[Any, Any, Any], state: State, org_id: FromPath[str]
) -> Template:
    viewer = await member(request)
    org, wallet, role = await _org(state, viewer, org_id)
    now = datetime.now(UTC)
    members = [
        {
            "user_id": uid,
            "email": m.email,
            "role": m.role,
            "budget": m.budget,
            "used": orgs.used_this_month(org, uid, now),
        }
        for uid, m in sorted(org.members.items(), key=lambda item: item[1].email)
    ]
    return render(
        request,
        "orgs/org.html",
        viewer,
        nav="orgs",
        org=org,
        role=role,
        manager=role in orgs.MANAGERS,
        balance=wallets.spendable(wallet, now),
        members=members,
        mine=next(m for m in members if m["user_id"] == viewer.user_id),
        org_used=orgs.used_this_month(org, None, now),
        resets_at=orgs.resets_at(now),
    )


@get("/app/orgs/{org_id:str}/credits")
async def org_credits(
    request: Request[Any, Any, Any],
    state: State,
    org_id: FromPath[str],
    member_id: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
) -> Template:
    viewer = await member(request)
    org, wallet, _ = await _org(state, viewer, org_id, managers_only=True)
    settings: Settings = state.settings
    pool: asyncpg.Pool = state.pool
    await caught_up(pool, org_id, ["ledger", "jobs"], settings.read_wait_s)
    async with pool.acquire() as conn:
        page = await org_queries.org_ledger_page(
            conn, org_id, member=member_id, reason=None, cursor=cursor, limit=PAGE_SIZE
        )
    return render(
        request,
        "orgs/credits.html",
        viewer,
        nav="orgs",
        org=org,
        balance=wallets.spendable(wallet, datetime.now(UTC)),
        page=page,
        member_id=member_id,
        cursor=cursor,
    )


@get("/app/orgs/{org_id:str}/buy")
async def org_buy(request: Request[Any, Any, Any], state: State, org_id: FromPath[str]) -> Template:
    viewer = await member(request)
    org, _, _ = await _org(state, viewer, org_id, managers_only=True)
    settings: Settings = state.settings
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        plans = await plan_comparison(conn, settings)  # the same plans as a person's
    return render(
        request,
        "buy.html",
        viewer,
        nav="orgs",
        catalog=settings.catalog,
        payments_ready=bool(settings.stripe_secret_key),
        ledger_mark=0,
        plans=plans,
        welcome=False,
        buy_wallet=f"org:{org.org_id}",
        buy_for=org.name,
    )


@get("/app/invitations/{token:str}")
async def invitation(request: Request[Any, Any, Any], token: FromPath[str]) -> Template:
    viewer = await member(request)
    return render(request, "orgs/accept.html", viewer, nav="orgs", token=token)


@get("/app/workspace")
async def switch(
    request: Request[Any, Any, Any], use: FromQuery[str] = "", back: FromQuery[str] = "/app/run"
) -> Redirect:
    """Use this org's wallet (or, empty, your own) and go back where you were."""
    await member(request)
    here = back if back.startswith("/app/") and "//" not in back else "/app/run"
    cookie = Cookie(key=COOKIE, value=use, path="/", httponly=True, samesite="lax")
    return Redirect(here, cookies=[cookie])


handlers = [org_list, org_page, org_credits, org_buy, invitation, switch]
