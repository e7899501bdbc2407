"""GET /me and GET /ledger: the signed-in user's profile, balance and ledger lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Router, get
from litestar.datastructures import State
from litestar.params import FromQuery, QueryParameter

from portal.consistency import caught_up
from portal.credits import lot_row_view, next_expiry, wallet_state
from portal.identity import signed_in_user
from portal.responses import SIGNED_IN, errors
from portal.routes.jobs import me
from portal.schemas import DailyUse, Lots, Me, Reason
from projections import lot_queries, queries
from projections.views import LedgerEntry, Page
from rcc.domain import wallet as wallets
from rcc.domain.billing import state_for
from rcc.policy.terms import daily_standing
from rcc.policy.wallets import low_balance_rcc
from rcc.store.heads import read_heads


@get("/me", responses=errors(*SIGNED_IN))
async def get_me(state: State, request: Request[Any, Any, Any]) -> Me:
    """Profile, balance and plan. The balance is read from the wallet's stream head,
    which every command updates in its own transaction: never stale."""
    who = await me(request)
    assert who.user_id is not None
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        heads = await read_heads(conn, [f"user-{who.user_id}", f"wallet-{who.user_id}"])
        plan = await conn.fetchval(
            "SELECT plan FROM users WHERE id = $1 AND plan_active_until > now()", who.user_id
        )
        wallet = wallet_state(heads[f"wallet-{who.user_id}"].state)
        daily = await daily_standing(conn, who.user_id, wallet, who.is_admin)  # h6
        threshold = await low_balance_rcc(  # h13: the policy for this wallet
            conn, who.user_id, state.settings.low_balance_rcc, datetime.now(UTC)
        )
        # A job is a hold too: what open jobs set aside, as rcc_read.balances counts it.
        job_holds = await conn.fetchval(
            """SELECT COALESCE(sum(j.cost_rcc), 0) FROM wallet_open_jobs o
                 JOIN jobs j ON j.id = o.job_id
                WHERE o.wallet_id = $1 AND NOT j.bypass""",
            who.user_id,
        )
    user = heads[f"user-{who.user_id}"].state
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
        held_rcc=wallet.held + int(job_holds),  # service holds (head) + open jobs
        next_expiry=next_expiry(wallet, now),
        daily=DailyUse(**msgspec.structs.asdict(daily)),  # h6: policies and plans
        blocked=bool(user.get("blocked", False)),
        blocked_reason=str(user.get("blocked_reason", "")),
        billing_state=state_for(spendable, threshold),  # h7
    )


@get("/credits/lots", responses=errors(*SIGNED_IN))
async def get_lots(state: State, request: Request[Any, Any, Any]) -> Lots:
    """Your credit lots that can still be spent, in the order they are spent: the lowest
    priority number first, then the soonest expiry (none last), then the oldest. Read
    from the lots read model once it has applied your wallet's latest event."""
    who = await me(request)
    assert who.user_id is not None
    await caught_up(state.pool, who.user_id, ["lots", "balances"], state.settings.read_wait_s)
    pool: asyncpg.Pool = state.pool
    now = datetime.now(UTC)
    async with pool.acquire() as conn:
        lots = await lot_queries.live_lots(conn, who.user_id, now)
        available = await lot_queries.available(conn, who.user_id, now)
    return Lots(items=[lot_row_view(lot) for lot in lots], available_rcc=available)


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
