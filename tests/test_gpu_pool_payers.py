"""Fair turns per payer and plan priority (docs/GPU_POOL.md, rcc/queue_order.py): an
organisation's members share one turn, and a higher plan's job goes first without
starving anyone."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg
import httpx

from comfy_adapter.run import prompt_id_for
from projections.queue_view import standings
from rcc.domain.events import JobCreated
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.policy_commands import SetPolicy
from tests.adapter_helpers import (
    SLOW,
    assert_ledger,
    create_job,
    jain,
    job_events,
    known,
    running,
    sample_slots,
    settings_for,
    status_of,
    wait_status,
    wait_until,
)
from tests.comfy_server import ComfyServer
from tests.helpers import funded_user
from tests.org_helpers import join, new_org
from tests.payment_helpers import caught_up


async def test_an_organisations_members_share_one_turn_with_a_lone_user(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    """5 members of one org queue 10 org jobs each, then a lone user queues 5: the lone
    user's jobs interleave with the org's (after the org's jobs already on the GPU, at
    most one org job between two of the lone user's), as if the org were one user.
    Jain's index of the slots per payer is printed."""
    org = await new_org(client, pool, credits=50)
    members = [org.people["owner"]] + [await join(client, pool, org, "member") for _ in range(4)]
    lone = await funded_user(pool, 5)
    async with (
        ComfyServer(silent_seconds={"ImageBlur": 0.02}) as comfy,
        running(pool, settings_for(tmp_path, [comfy.url], slots=2, max_running_per_user=2)),
    ):
        org_jobs = [
            await create_job(pool, m.user_id, SLOW, org_id=org.id)
            for m in members
            for _ in range(10)
        ]
        await wait_until(lambda: len(comfy.executed) >= 4, what="the org's jobs to run")
        started_before = len(comfy.executed)
        lone_jobs = [await create_job(pool, lone, SLOW) for _ in range(5)]
        # The turns are the dispatcher's once it knows the lone user's jobs: under load
        # its feed can fold them a moment late, while the org's 20 ms jobs keep starting.
        await wait_until(
            lambda: known(pool, lone_jobs), what="the adapter to see the lone user's jobs"
        )
        known_from = len(comfy.executed)
        samples: list[Counter[str]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_slots(pool, samples, stop, by="payer"))
        deadline = time.monotonic() + 60
        while not all([await status_of(pool, j) == "succeeded" for j in lone_jobs]):
            assert time.monotonic() < deadline, "the lone user's jobs did not finish"
            await asyncio.sleep(0.02)
        stop.set()
        await sampler
        org_prompts = {prompt_id_for(j) for j in org_jobs}

        def org_next() -> list[int]:
            order = comfy.executed[started_before:]
            first = known_from - started_before
            return [i for i, pid in enumerate(order) if pid in org_prompts and i >= first]

        await wait_until(lambda: len(org_next()) >= 8, what="the org's 8th next job to start")
        order = comfy.executed[started_before:]
        # Up to three org prompts were already on ComfyUI or claimed (two slots, and a
        # claim made while the lone user's jobs were being folded in); then the turns
        # alternate, so the lone user's job k starts before the org's (k + 4)th next
        # job. Per user, each of the five members would have had a turn in between.
        for k, job in enumerate(lone_jobs):
            assert order.index(prompt_id_for(job)) < org_next()[k + 3], (k, order, org_next())
    payers = [await _wallet_of(pool, org_jobs[0]), await _wallet_of(pool, lone_jobs[0])]
    shares = [sum(s[p] for s in samples) / len(samples) for p in payers]
    index, means = jain(shares), [round(s, 2) for s in shares]
    print(
        f"\nJain's index of running slots per payer while the lone user waited or ran: {index:.3f}"
    )
    print(f"mean slots per payer (org, lone user): {means}")
    await assert_ledger(pool, owner, lone, 0)


async def test_a_higher_plans_job_goes_first_but_does_not_starve_an_earlier_one(
    pool: asyncpg.Pool, projector: object, tmp_path: Path
) -> None:
    """With the backend down, a free-plan user queues a job, then a Pro user (plan
    policy `queue.priority` 2) queues three. In the line the Pro user's three come
    first (priority 2: up to three jobs a round). With one slot, the Pro user's first
    job runs first, then the free user's, as the payer served longest ago: priority
    weights the turns, it does not take them all."""
    free = await funded_user(pool, 5)
    pro = await funded_user(pool, 0)
    granted = await execute(
        pool, c.GrantCredits(user_id=pro, kind="subscription", amount=5), metadata={"plan": "pro"}
    )
    assert isinstance(granted, Done), granted
    policy = SetPolicy(
        key="queue.priority", scope="plan", scope_id="pro", value=2, reason="t", actor="t"
    )
    assert isinstance(await execute(pool, policy), Done)
    await caught_up(pool)  # the users read model knows the Pro user's plan
    comfy = ComfyServer()
    await comfy.start()
    await comfy.stop()  # down: nothing is dispatched until it comes back
    try:
        async with running(pool, settings_for(tmp_path, [comfy.url], slots=1)) as worker:
            early = await create_job(pool, free, SLOW)
            pro_jobs = [await create_job(pool, pro, SLOW) for _ in range(3)]
            priorities = [
                next(e for e in await job_events(pool, j) if isinstance(e, JobCreated))
                for j in [early, *pro_jobs]
            ]
            assert [e.queue_priority for e in priorities] == [0, 2, 2, 2]
            await wait_until(lambda: worker.caught_up.is_set())
            for job in [early, *pro_jobs]:
                await wait_status(pool, job, "queued")
            async with pool.acquire() as conn:
                found = await standings(conn, [early, *pro_jobs])
            # Nobody served yet: the Pro user has 1 + 2 jobs in round 0, all before the
            # free user's (the line as it stands, as if three slots freed at once).
            places = [found[j].queue_position for j in [*pro_jobs, early]]
            assert places == [1, 2, 3, 4], found
            await comfy.start()
            for job in [early, *pro_jobs]:
                await wait_status(pool, job, "succeeded", within=30)
    finally:
        await comfy.stop()
    order = [comfy.executed.index(prompt_id_for(j)) for j in [pro_jobs[0], early, *pro_jobs[1:]]]
    assert order == sorted(order), comfy.executed


async def _wallet_of(pool: asyncpg.Pool, job_id: str) -> str:
    created = next(e for e in await job_events(pool, job_id) if isinstance(e, JobCreated))
    return created.wallet_id
