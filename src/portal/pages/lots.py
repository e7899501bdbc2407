"""The lots on the pages: the credits page's list and expiry warning, and an admin's
view of one user's lots with a grant that may expire (docs/LOTS.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec
from litestar import Request, get
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.response import Template

from portal.consistency import caught_up
from portal.pages.base import PageRefused, admin, render
from projections import lot_queries, queries
from projections.lot_queries import LotRow

# Credits expiring within this long are announced on the credits page.
WARN_WITHIN = timedelta(days=7)


class LotsPanel(msgspec.Struct, frozen=True, kw_only=True):
    """What the lots panel shows: the live lots and what expires soon."""

    lots: list[LotRow]
    expiring_rcc: int  # left in lots that expire within WARN_WITHIN
    expiring_at: datetime | None  # the soonest of those expiries


async def lots_panel(conn: asyncpg.Connection, wallet_id: str) -> LotsPanel:
    """A wallet's live lots (spending order) and the credits expiring within 7 days."""
    now = datetime.now(UTC)
    lots = await lot_queries.live_lots(conn, wallet_id, now)
    soon = [
        lot for lot in lots if lot.expires_at is not None and lot.expires_at <= now + WARN_WITHIN
    ]
    return LotsPanel(
        lots=lots,
        expiring_rcc=sum(lot.remaining for lot in soon),
        expiring_at=min((lot.expires_at for lot in soon if lot.expires_at), default=None),
    )


@get("/app/admin/users/{user_id:str}")
async def user_lots(
    request: Request[Any, Any, Any], state: State, user_id: FromPath[str]
) -> Template:
    """One user's balance and lots, with a grant form that takes an expiry."""
    viewer = await admin(request)
    await caught_up(state.pool, user_id, ["users", "lots"], state.settings.read_wait_s)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        user = await queries.user(conn, user_id)
        if user is None:
            raise PageRefused(404, "No such user", "No user has that id.", viewer)
        panel = await lots_panel(conn, user.wallet_id)
    return render(
        request, "admin/user.html", viewer, nav="admin", sub="users", user=user, panel=panel
    )


handlers = [user_lots]
