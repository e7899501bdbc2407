"""Idempotency keys and refused commands.

Repeats return the first answer; refusals change nothing.
"""

from __future__ import annotations

import asyncio

import asyncpg

from rcc.domain.errors import IdempotencyKeyReused, IllegalTransition, InsufficientCredits, NotFound
from rcc.domain.events import TopupGranted
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.store import event_store as es
from rcc.store.event_store import StreamWrite
from tests.helpers import balance_of, funded_user, snapshot


async def test_simultaneous_repeats_of_one_key_create_one_job(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await funded_user(pool, 10)
    cmd = c.CreateJob(user_id=user, job_type="IMAGE_TASK", workflow={"1": {"class_type": "X"}})
    outcomes = await asyncio.gather(
        *(execute(pool, cmd, idempotency_key=f"user:{user}:abc") for _ in range(20))
    )
    assert all(isinstance(o, Done) for o in outcomes)
    job_ids = {o.result["job_id"] for o in outcomes if isinstance(o, Done)}
    assert len(job_ids) == 1
    assert sum(1 for o in outcomes if isinstance(o, Done) and not o.replayed) == 1
    assert await balance_of(owner, user) == 9
    assert await owner.fetchval("SELECT count(*) FROM streams WHERE stream_id LIKE 'job-%'") == 1
    # Replays point at the same committed events as the first answer.
    assert len({o.checkpoint for o in outcomes if isinstance(o, Done)}) == 1


async def test_a_key_reused_for_a_different_command_is_refused(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await funded_user(pool, 10)
    first = await execute(
        pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"), idempotency_key="k"
    )
    assert isinstance(first, Done)
    before = await snapshot(owner)
    other = await execute(
        pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"), idempotency_key="k"
    )
    assert isinstance(other, IdempotencyKeyReused)
    assert await snapshot(owner) == before


async def test_concurrent_different_commands_on_one_key_one_wins_others_refused(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await funded_user(pool, 50)
    kinds = ["IMAGE_TASK", "VIDEO_TASK"] * 5
    outcomes = await asyncio.gather(
        *(
            execute(pool, c.CreateJob(user_id=user, job_type=k), idempotency_key="same")
            for k in kinds
        )
    )
    done = [o for o in outcomes if isinstance(o, Done)]
    refused = [o for o in outcomes if isinstance(o, IdempotencyKeyReused)]
    assert len(done) + len(refused) == 10 and len(refused) == 5
    assert len({o.result["job_id"] for o in done}) == 1
    assert await owner.fetchval("SELECT count(*) FROM streams WHERE stream_id LIKE 'job-%'") == 1


async def test_refused_commands_leave_every_table_as_it_was(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await funded_user(pool, 3)
    job = await execute(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"))
    assert isinstance(job, Done)
    job_id = job.result["job_id"]
    assert isinstance(
        await execute(pool, c.MarkJob(job_id=job_id, status="succeeded")), IllegalTransition
    )
    before = await snapshot(owner)

    short = await execute(
        pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"), idempotency_key="x"
    )
    assert isinstance(short, InsufficientCredits) and (short.balance_rcc, short.cost_rcc) == (2, 5)
    assert await snapshot(owner) == before  # the key was not kept either

    await execute(pool, c.MarkJob(job_id=job_id, status="running"))
    await execute(pool, c.MarkJob(job_id=job_id, status="succeeded"))
    before = await snapshot(owner)
    for status in ("failed", "cancelled", "running", "succeeded"):
        assert isinstance(
            await execute(pool, c.MarkJob(job_id=job_id, status=status)), IllegalTransition
        )
    assert isinstance(await execute(pool, c.MarkJob(job_id="nope", status="failed")), NotFound)
    assert await snapshot(owner) == before

    async with pool.acquire() as conn:
        try:
            async with conn.transaction():
                await es.append(
                    conn,
                    [
                        StreamWrite(
                            stream_id=f"wallet-{user}",
                            expected_version=1,
                            events=[TopupGranted(amount=99)],
                        )
                    ],
                )
        except es.StreamVersionConflict:
            pass
    assert await snapshot(owner) == before


async def test_failing_a_job_releases_exactly_once_however_often_repeated(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await funded_user(pool, 5)
    job = await execute(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
    assert isinstance(job, Done)
    fails = await asyncio.gather(
        *(
            execute(pool, c.MarkJob(job_id=job.result["job_id"], status="failed", error="boom"))
            for _ in range(10)
        )
    )
    assert sum(isinstance(f, Done) for f in fails) == 1
    assert sum(isinstance(f, IllegalTransition) for f in fails) == 9
    assert await balance_of(owner, user) == 5
    releases = await owner.fetchval("SELECT count(*) FROM events WHERE type = 'credits_released'")
    assert releases == 1


async def test_admin_jobs_record_a_zero_bypass_and_refund_nothing(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    admin = await funded_user(pool, 0, admin=True)
    job = await execute(pool, c.CreateJob(user_id=admin, job_type="VIDEO_TASK"))
    assert isinstance(job, Done) and job.result["bypass"] is True
    assert (
        await owner.fetchval(
            "SELECT type FROM events WHERE stream_id = $1 ORDER BY version DESC LIMIT 1",
            f"wallet-{admin}",
        )
        == "admin_bypassed"
    )
    failed = await execute(pool, c.MarkJob(job_id=job.result["job_id"], status="failed", error="x"))
    assert isinstance(failed, Done) and failed.result["released_rcc"] == 0
    assert await balance_of(owner, admin) == 0
