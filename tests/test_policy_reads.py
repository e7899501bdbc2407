"""The keys that used to be read from settings, read through the policy resolver
(docs/POLICIES.md, "Who reads what"): each test changes a policy and shows the running
code follows it, for the scope it was set for and no other, without a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from rcc.billing.follower import BillingFollower, policy_thresholds
from rcc.domain.events import BillingStateChanged, decode_event
from rcc.follower import checkpoints
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.policy_commands import SetPolicy
from tests.helpers import funded_user
from tests.portal_helpers import grant, sign_up
from tests.projection_helpers import drain

ENV_THRESHOLD = 5  # RCC_LOW_BALANCE_RCC in the test settings (the default)


async def set_policy(
    pool: asyncpg.Pool,
    key: str,
    value: object,
    scope: str = "global",
    scope_id: str = "",
    effective_at: datetime | None = None,
) -> None:
    cmd = SetPolicy(
        key=key, scope=scope, scope_id=scope_id, value=value,  # type: ignore[arg-type]
        effective_at=effective_at, reason="test", actor="test",
    )  # fmt: skip
    assert isinstance(await execute(pool, cmd), Done)


async def debit(pool: asyncpg.Pool, user_id: str, amount: int) -> None:
    done = await execute(
        pool, c.AdjustCredits(user_id=user_id, amount=-amount, actor="t", note="d")
    )
    assert isinstance(done, Done), done


async def transitions(pool: asyncpg.Pool, wallet: str) -> list[BillingStateChanged]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type, data FROM events WHERE stream_id = $1 ORDER BY version",
            f"billing-{wallet}",
        )
    return [decode_event(r["type"], r["data"]) for r in rows]  # type: ignore[misc]


async def test_a_users_low_balance_threshold_moves_only_their_state_from_its_time(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """X's threshold of 50 (user scope) makes 40 RCC low for X, while Y at 40 stays
    healthy; Y's own 45 from a future instant judges only debits recorded after it,
    even when the follower folds them all later in one batch."""
    x = await sign_up(client)
    y = await funded_user(pool, 0)
    await set_policy(pool, "billing.low_balance_rcc", 50, "user", x.user_id)
    at = datetime.now(UTC) + timedelta(seconds=1.5)
    await set_policy(pool, "billing.low_balance_rcc", 45, "user", y, effective_at=at)
    for user in (x.user_id, y):
        await grant(pool, user, 100)
        await debit(pool, user, 60)  # 40 left
    me = (await client.get("/me")).json()
    assert (me["balance_rcc"], me["billing_state"]) == (40, "low_balance"), me
    page = (await client.get("/app/credits")).text
    assert 'data-billing-state="low_balance"' in page and "50 RCC or less" in page
    await asyncio.sleep((at - datetime.now(UTC)).total_seconds() + 0.05)
    await debit(pool, y, 1)  # 39, recorded after Y's 45 took effect
    follower = BillingFollower(policy_thresholds(ENV_THRESHOLD))
    async with pool.acquire() as conn:
        await checkpoints.ensure(conn, [follower.name], "subscriber")
    await drain(pool, [follower], limit=50)  # one late pass over everything
    xs, ys = await transitions(pool, x.user_id), await transitions(pool, y)
    assert [(e.state, e.balance, e.threshold) for e in xs] == [
        ("healthy", 100, 50),
        ("low_balance", 40, 50),
    ]
    assert [(e.state, e.balance, e.threshold) for e in ys] == [
        ("healthy", 100, ENV_THRESHOLD),
        ("low_balance", 39, 45),  # not at 40: that debit came before 45 took effect
    ]
