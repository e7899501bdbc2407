"""GET /me and GET /ledger: the signed-in user's profile, balance and ledger lines."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import asyncpg
from litestar import Request, Router, get
from litestar.datastructures import State
from litestar.params import FromQuery, QueryParameter

from portal.consistency import caught_up
from portal.identity import signed_in_user
from portal.responses import SIGNED_IN, errors
from portal.routes.jobs import me
from portal.schemas import Me, Reason
from projections import queries
from projections.views import LedgerEntry, Page


@get("/me", responses=errors(*SIGNED_IN))
async def get_me(state: State, request: Request[Any, Any, Any]) -> Me:
    """Profile, balance and plan. The balance is read from the wallet's stream head,
    which every command updates in its own transaction: never stale."""
    who = await me(request)
    assert who.user_id is not None
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        heads = await conn.fetch(
            "SELECT stream_id, state FROM streams WHERE stream_id = ANY($1::text[])",
            [f"user-{who.user_id}", f"wallet-{who.user_id}"],
        )
        plan = await conn.fetchval(
            "SELECT plan FROM users WHERE id = $1 AND plan_active_until > now()", who.user_id
        )
    found = {row["stream_id"].split("-", 1)[0]: row["state"] for row in heads}
    user, wallet = found.get("user", {}), found.get("wallet", {})
    return Me(
        id=who.user_id,
        email=str(user.get("email", "")),
        is_admin=bool(user.get("is_admin", False)),
        balance_rcc=int(wallet.get("balance", 0)),
        plan=plan,
        open_jobs=int(wallet.get("open_jobs", 0)),
        csrf_token=who.csrf_token,
    )


@get("/ledger", responses=errors(400, *SIGNED_IN))
async def get_ledger(
    state: State,
    request: Request[Any, Any, Any],
    reason: FromQuery[Reason | None] = None,
    job_id: FromQuery[str | None] = None,
    since: FromQuery[datetime | None] = None,
    until: FromQuery[datetime | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
) -> Page[LedgerEntry]:
    """Your ledger lines, newest first: filter by reason, job and date range [since, until)."""
    who = await me(request)
    assert who.user_id is not None
    await caught_up(state.pool, who.user_id, ["ledger"], state.settings.read_wait_s)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        return await queries.ledger_page(
            conn,
            who.user_id,
            reason=reason,
            job_id=job_id,
            since=since,
            until=until,
            cursor=cursor,
            limit=limit,
        )


router = Router(
    path="/", route_handlers=[get_me, get_ledger], guards=[signed_in_user], tags=["account"]
)
