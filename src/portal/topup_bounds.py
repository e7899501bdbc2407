"""The route guard for top-up bounds (h13): a pack outside the buyer's `topup.min_rcc`
… `topup.max_rcc` is a 422 `topup_out_of_bounds` before anything reaches Stripe."""

from __future__ import annotations

import asyncpg

from portal.errors import ApiError
from rcc.domain.catalog import Pack
from rcc.policy.topups import topup_bounds


async def within_topup_bounds(
    pool: asyncpg.Pool, pack: Pack, user_id: str, org_id: str | None = None
) -> None:
    """Raise 422 when the policy does not allow buying `pack` (its credits) now."""
    async with pool.acquire() as conn:
        bounds = await topup_bounds(conn, user_id, org_id)
    if problem := bounds.refuses(pack.credits):
        raise ApiError(
            422,
            "topup_out_of_bounds",
            problem,
            min_rcc=bounds.min_rcc,
            max_rcc=bounds.max_rcc,
            credits=pack.credits,
        )
