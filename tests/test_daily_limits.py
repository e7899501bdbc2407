"""Daily spending limits per plan (docs/POLICIES.md): the 429 with what was used, the
limit and when it resets; nothing written; and the limit holding under 200 racing jobs."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from rcc.audit import verify
from rcc.domain.errors import DailyLimitReached
from rcc.service import commands as c
from rcc.service.bus import execute, execute_alone
from rcc.service.handlers import Done
from rcc.service.policy_commands import SetPolicy
from rcc.store.database import create_pool
from tests.helpers import balance_of, funded_user, snapshot
from tests.portal_helpers import IMAGE_JOB, bearer

VIDEO_JOB = {**IMAGE_JOB, "type": "VIDEO_TASK"}


async def _limit_free_plan(pool: asyncpg.Pool, limit: int) -> None:
    """The free plan's daily limit, and room for enough unfinished jobs to reach it."""
    for key, value in (("limits.daily_rcc", limit), ("jobs.max_queued", 1000)):
        policy = SetPolicy(
            key=key, scope="plan", scope_id="free", value=value, reason="t", actor="t"
        )
        assert isinstance(await execute(pool, policy), Done)


def _cost(done: Done) -> int:
    result = done.result  # the coalescer's answer, or the stored one of a lone command
    return int(result["cost_rcc"] if isinstance(result, dict) else result.cost_rcc)


async def test_a_job_beyond_the_daily_limit_is_a_429_that_writes_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    await _limit_free_plan(pool, 12)
    user = await funded_user(pool, 100)
    headers = await bearer(pool, "user", user)
    me = (await client.get("/me", headers=headers)).json()
    assert me["daily"]["used_rcc"] == 0 and me["daily"]["limit_rcc"] == 12
    for job in (VIDEO_JOB, VIDEO_JOB):
        assert (await client.post("/jobs", json=job, headers=headers)).status_code == 201
    before = await snapshot(owner)
    refused = await client.post("/jobs", json=VIDEO_JOB, headers=headers)
    assert refused.status_code == 429
    body = refused.json()
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    reset = midnight + timedelta(days=1)
    assert body["error"] == "daily_limit_reached"
    assert (body["used_rcc"], body["limit_rcc"]) == (10, 12)
    assert datetime.fromisoformat(body["resets_at"]) == reset
    wait = int(refused.headers["retry-after"])
    assert 0 < wait <= 86_401 and abs(wait - (reset - datetime.now(UTC)).total_seconds()) < 5
    assert await snapshot(owner) == before
    # What fits still goes; a failed job gives its allowance back.
    ok = await client.post("/jobs", json=IMAGE_JOB, headers=headers)
    assert ok.status_code == 201
    failed = await execute(pool, c.MarkJob(job_id=ok.json()["id"], status="failed", error="x"))
    assert isinstance(failed, Done)
    daily = (await client.get("/me", headers=headers)).json()["daily"]
    assert daily["used_rcc"] == 10 and daily["resets_at"].startswith(reset.date().isoformat())


async def test_a_daily_limit_racing_200_jobs_is_never_exceeded(
    pool: asyncpg.Pool, owner: asyncpg.Connection, db_url: str
) -> None:
    limit = 57
    await _limit_free_plan(pool, limit)
    user = await funded_user(pool, 5_000)
    other = await create_pool(db_url, min_size=4, max_size=20)  # a second set of connections
    rng = random.Random(14)
    kinds = [rng.choice(["IMAGE_TASK", "VIDEO_TASK"]) for _ in range(200)]
    try:
        # Half go through the coalescer (grouped transactions), half one transaction
        # each on other connections: only the wallet's row lock orders them.
        outcomes = await asyncio.gather(
            *(
                execute(pool, c.CreateJob(user_id=user, job_type=kind))
                if i % 2
                else execute_alone(other, c.CreateJob(user_id=user, job_type=kind))
                for i, kind in enumerate(kinds)
            )
        )
    finally:
        await other.close()
    accepted = [_cost(o) for o in outcomes if isinstance(o, Done)]
    refusals = [o for o in outcomes if not isinstance(o, Done)]
    assert all(isinstance(r, DailyLimitReached) for r in refusals), refusals[:3]
    assert sum(accepted) <= limit
    assert sum(accepted) >= limit - 4  # images (1 RCC) keep filling it up to the brim
    cost = {"IMAGE_TASK": 1, "VIDEO_TASK": 5}
    for refusal, kind in zip(outcomes, kinds, strict=True):
        if isinstance(refusal, DailyLimitReached):  # every refusal was justified
            assert refusal.used_rcc + cost[kind] > limit
    assert await balance_of(owner, user) == 5_000 - sum(accepted)
    reserved = await owner.fetchval(
        """SELECT sum((data->>'amount')::int) FROM events
            WHERE stream_id = $1 AND type = 'credits_reserved'""",
        f"wallet-{user}",
    )
    assert reserved == sum(accepted)
    state = await owner.fetchval("SELECT state FROM streams WHERE stream_id = $1", f"wallet-{user}")
    assert state["spent_today"] == sum(accepted)
    assert (await verify(owner)).ok  # the folded state agrees with the events alone
