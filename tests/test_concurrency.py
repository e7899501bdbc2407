"""Many real connections at once against one wallet: nothing overdrawn, nothing lost."""

from __future__ import annotations

import asyncio
import random

import asyncpg

from rcc.audit import verify
from rcc.domain.errors import InsufficientCredits
from rcc.domain.prices import JOB_PRICES_RCC
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.helpers import balance_of, funded_user


async def test_500_concurrent_jobs_on_137_rcc(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await funded_user(pool, 137)
    rng = random.Random(137)
    types = [rng.choice(["IMAGE_TASK", "VIDEO_TASK"]) for _ in range(500)]

    outcomes = await asyncio.gather(
        *(execute(pool, c.CreateJob(user_id=user, job_type=t)) for t in types)
    )

    accepted = [t for t, o in zip(types, outcomes, strict=True) if isinstance(o, Done)]
    refused = [o for o in outcomes if isinstance(o, InsufficientCredits)]
    assert len(accepted) + len(refused) == 500, "every call is either accepted or refused"
    spent = sum(JOB_PRICES_RCC[t] for t in accepted)
    final = await balance_of(owner, user)
    assert final == 137 - spent >= 0
    # Writers are serialised, so each refusal saw a real balance too small for its cost,
    # and the balances reported to refused callers are ones the wallet really had.
    assert all(r.balance_rcc < r.cost_rcc for r in refused)
    assert all(final <= r.balance_rcc for r in refused)
    # Exactly the affordable ones: once the balance is below 1 RCC nothing more fits,
    # and a video was only refused while the balance was under 5.
    assert final < min((r.cost_rcc for r in refused), default=final + 1)
    # The running balance along the wallet's history never dips below zero.
    report = await verify(owner)
    assert report.ok, report.problems
    assert report.balances[user] == final
    jobs = await owner.fetchval("SELECT count(*) FROM streams WHERE stream_id LIKE 'job-%'")
    assert jobs == len(accepted)


async def test_200_concurrent_reserves_on_one_hot_wallet_all_finish_in_order(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await funded_user(pool, 1000)
    outcomes = await asyncio.gather(
        *(execute(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK")) for _ in range(200))
    )
    assert all(isinstance(o, Done) for o in outcomes), [
        o for o in outcomes if not isinstance(o, Done)
    ][:3]
    versions = [
        r["version"]
        for r in await owner.fetch(
            "SELECT version FROM events WHERE stream_id = $1 ORDER BY position", f"wallet-{user}"
        )
    ]
    # Opened, granted, then 200 reserves: one gap-free sequence in commit order.
    assert versions == list(range(1, 203))
    balances = sorted(o.result["balance_rcc"] for o in outcomes if isinstance(o, Done))
    assert balances == list(range(800, 1000)), "each caller saw its own step of the balance"
    assert await balance_of(owner, user) == 800
