"""The policy scope of a wallet, and the low-balance threshold that applies to it.

A user's wallet resolves as its user (then their plan, then global); an organisation's
wallet (its id is the org's id, stream `org-<id>`) as that org (then global). The
billing follower and the portal's banner both ask here, so they agree."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

import asyncpg
import msgspec

from rcc.policy.book import PolicyBook, int_or_none, resolve
from rcc.policy.store import current_book, plans_of

LOW_BALANCE = "billing.low_balance_rcc"

# (wallet id, instant) -> the threshold in RCC in effect for that wallet then
Thresholds = Callable[[str, datetime], int]


class WalletScope(msgspec.Struct, frozen=True, kw_only=True):
    user: str | None = None
    org: str | None = None
    plan: str | None = None


async def wallet_scopes(
    conn: asyncpg.Connection, wallet_ids: Collection[str]
) -> dict[str, WalletScope]:
    """Each wallet's scope: an org's (its `org-<id>` stream exists), else its user's."""
    wanted = sorted(set(wallet_ids))
    orgs = {
        r["stream_id"][len("org-") :]
        for r in await conn.fetch(
            "SELECT stream_id FROM streams WHERE stream_id = ANY($1::text[])",
            [f"org-{w}" for w in wanted],
        )
    }
    plans = await plans_of(conn, [w for w in wanted if w not in orgs])
    return {
        w: WalletScope(org=w) if w in orgs else WalletScope(user=w, plan=plans[w]) for w in wanted
    }


def threshold_of(book: PolicyBook, scope: WalletScope, at: datetime, default: int) -> int:
    """`billing.low_balance_rcc` for a wallet's scope at `at` (`default`: the environment's)."""
    value = resolve(
        book, LOW_BALANCE, user=scope.user, org=scope.org, plan=scope.plan, at=at, default=default
    )
    found = int_or_none(value)
    return default if found is None else found


async def low_balance_thresholds(
    conn: asyncpg.Connection, wallet_ids: Collection[str], default: int
) -> Thresholds:
    """The thresholds of these wallets, loaded once (a follower's batch start) and then
    answered synchronously for any instant (an event's time)."""
    book = await current_book(conn)
    scopes = await wallet_scopes(conn, wallet_ids)
    return lambda wallet, at: threshold_of(book, scopes[wallet], at, default)


async def low_balance_rcc(
    conn: asyncpg.Connection, wallet_id: str, default: int, at: datetime
) -> int:
    """One wallet's low-balance threshold at `at` (the banner, GET /me)."""
    return (await low_balance_thresholds(conn, [wallet_id], default))(wallet_id, at)
