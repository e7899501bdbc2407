"""GET /me and GET /ledger: the signed-in user's profile, balance and ledger lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from litestar import Request, Router, get
from litestar.datastructures import State
from litestar.params import FromQuery, QueryParameter

from portal.consistency import caught_up
from portal.credits import live_lots, lot_view, next_expiry, wallet_state
from portal.identity import signed_in_user
from portal.responses import SIGNED_IN, errors
from portal.routes.jobs import me
from portal.schemas import Lots, Me, Reason
from projections import queries
from projections.views import LedgerEntry, Page
from rcc.domain import wallet as wallets
from rcc.domain.billing import state_for


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
    user, wallet = found.get("user", {}), wallet_state(found.get("wallet"))
    now = datetime.now(UTC)
    # Lots past their expiry are not spendable even before the scheduler's event.
    spendable = wallets.spendable(wallet, now)
    return Me(
        id=who.user_id,
        email=str(user.get("email", "")),
        is_admin=bool(user.get("is_admin", False)),
        balance_rcc=spendable,
        plan=plan,
        open_jobs=wallet.open_jobs,
        csrf_token=who.csrf_token,
        available_rcc=spendable,
        held_rcc=0,
        next_expiry=next_expiry(wallet, now),
        billing_state=state_for(spendable, state.settings.low_balance_rcc),  # h7
    )


@get("/credits/lots", responses=errors(*SIGNED_IN))
async def get_lots(state: State, request: Request[Any, Any, Any]) -> Lots:
    """Your credit lots that can still be spent, in the order they are spent: the lowest
    priority number first, then the soonest expiry (none last), then the oldest."""
    who = await me(request)
    assert who.user_id is not None
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        head = await conn.fetchval(
            "SELECT state FROM streams WHERE stream_id = $1", f"wallet-{who.user_id}"
        )
    wallet, now = wallet_state(head), datetime.now(UTC)
    return Lots(
        items=[lot_view(lot) for lot in live_lots(wallet, now)],
        available_rcc=wallets.spendable(wallet, now),
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
    path="/",
    route_handlers=[get_me, get_ledger, get_lots],
    guards=[signed_in_user],
    tags=["account"],
)
