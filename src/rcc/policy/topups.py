"""Top-up bounds (`topup.min_rcc`, `topup.max_rcc`): there is no free-amount top-up, so
they bound what can be bought, a catalog pack's credits, for the buyer's scope."""

from __future__ import annotations

import asyncpg
import msgspec

from rcc.policy.book import int_or_none, resolve
from rcc.policy.keys import KEYS
from rcc.policy.store import current_book, plans_of


class TopupBounds(msgspec.Struct, frozen=True, kw_only=True):
    min_rcc: int
    max_rcc: int

    def refuses(self, credits: int) -> str | None:
        """Why a top-up of `credits` is not allowed (None: it is)."""
        if credits < self.min_rcc:
            return f"top-ups start at {self.min_rcc} RCC; this one is {credits} RCC"
        if credits > self.max_rcc:
            return f"top-ups end at {self.max_rcc} RCC; this one is {credits} RCC"
        return None


async def topup_bounds(
    conn: asyncpg.Connection, user_id: str, org_id: str | None = None
) -> TopupBounds:
    """The bounds for a buyer now: the org's when buying for an org, else the user's
    (user > plan > global > built-in)."""
    book = await current_book(conn)
    user, plan = None, None
    if org_id is None:
        user, plan = user_id, (await plans_of(conn, [user_id]))[user_id]

    def value(key: str) -> int:
        found = int_or_none(resolve(book, key, user=user, org=org_id, plan=plan))
        default = KEYS[key].default
        assert isinstance(default, int)
        return default if found is None else found

    return TopupBounds(min_rcc=value("topup.min_rcc"), max_rcc=value("topup.max_rcc"))
