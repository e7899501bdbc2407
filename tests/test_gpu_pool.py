"""The GPU pool in one process: fair queues and backends that restart (docs/GPU_POOL.md)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg

from comfy_adapter.run import prompt_id_for
from rcc.domain.events import JobFailed, JobPromptLost
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


async def test_a_user_with_one_job_waits_behind_at_most_one_job_of_each_other_user(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    """A queues 100 jobs, then B-E one each: each of B-E starts before A's 3rd next job
    once the adapters know of them; the queue positions shown while they wait agree."""
    a = await funded_user(pool, 200)
    others = [await funded_user(pool, 5) for _ in range(4)]
    async with (
        ComfyServer(silent_seconds={"ImageBlur": 0.02}) as comfy,
        running(pool, settings_for(tmp_path, [comfy.url], slots=2, max_running_per_user=2)),
    ):
        a_jobs = [await create_job(pool, a, SLOW) for _ in range(100)]
        await wait_until(lambda: len(comfy.executed) >= 4, what="A's jobs to run")
        started_before = len(comfy.executed)
        late = [await create_job(pool, user, SLOW) for user in others]
        # The order is the dispatcher's once it knows the jobs: under load its feed can
        # fold B-E's creations a moment late, while A's 20 ms jobs keep starting.
        await wait_until(lambda: known(pool, late), what="the adapter to see B-E's jobs")
        known_from = len(comfy.executed)
        samples: list[Counter[str]] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_slots(pool, samples, stop))
        deadline = time.monotonic() + 60
        while not all([await status_of(pool, j) == "succeeded" for j in late]):
            assert time.monotonic() < deadline, "B-E did not finish"
            await asyncio.sleep(0.02)
        stop.set()
        await sampler
        a_prompts = {prompt_id_for(j) for j in a_jobs}

        def a_next() -> list[int]:
            order = comfy.executed[started_before:]
            first = known_from - started_before
            return [i for i, pid in enumerate(order) if pid in a_prompts and i >= first]

        await wait_until(lambda: len(a_next()) >= 3, what="A's 3rd next job to start")
        order = comfy.executed[started_before:]
        for job in late:
            assert order.index(prompt_id_for(job)) < a_next()[2], (order, a_next())
    users = [a, *others]
    shares = [sum(s[u] for s in samples) / len(samples) for u in users]
    index = jain(shares)
    print(f"\nJain's index of running slots per user while B-E waited or ran: {index:.3f}")
    print(f"mean slots per user (A, B-E): {[round(s, 2) for s in shares]}")
    await assert_ledger(pool, owner, a, 100)  # 100 reserved: run, running or queued
    for user in others:
        await assert_ledger(pool, owner, user, 4)


async def test_queue_position_follows_the_fair_order(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    """With no backend, waiting jobs are numbered round-robin across users."""
    from projections.queue_view import standings

    a, b = await funded_user(pool, 10), await funded_user(pool, 10)
    comfy = ComfyServer()
    await comfy.start()
    await comfy.stop()  # a backend that is down: nothing is dispatched
    async with running(pool, settings_for(tmp_path, [comfy.url])) as worker:
        a_jobs = [await create_job(pool, a, SLOW) for _ in range(3)]
        b_job = await create_job(pool, b, SLOW)
        await wait_until(lambda: worker.caught_up.is_set())
        for job in [*a_jobs, b_job]:
            await wait_status(pool, job, "queued")
        async with pool.acquire() as conn:
            found = await standings(conn, [*a_jobs, b_job])
    places = {job: found[job].queue_position for job in [*a_jobs, b_job]}
    assert places == {a_jobs[0]: 1, b_job: 2, a_jobs[1]: 3, a_jobs[2]: 4}, places
    assert (
        "unreachable" in found[b_job].waiting_reason or "reachable" in found[b_job].waiting_reason
    )


async def test_a_restarted_backend_runs_its_lost_jobs_once_more(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    """ComfyUI restarts mid-run and forgets its queue and history: every job it had
    accepted is submitted once more as its next attempt and succeeds; no job runs twice
    at once, and file names differ per attempt."""
    user = await funded_user(pool, 10)
    async with (
        ComfyServer(node_seconds={"ImageBlur": 60.0}) as comfy,  # the first run holds on
        running(
            pool, settings_for(tmp_path, [comfy.url], slots=2, retries=8, max_running_per_user=3)
        ),
    ):
        jobs = [await create_job(pool, user, SLOW) for _ in range(3)]
        first = {prompt_id_for(j) for j in jobs}
        # Down only once both slots' prompts are in and one runs: the third job waits for
        # a slot, so no POST /prompt is in flight. (One cut mid-request has an unknown
        # outcome; the adapter rightly submits it as attempt 2, never posting attempt 1.)
        await wait_until(
            lambda: comfy.running is not None and sum(comfy.posts[p] for p in first) == 2,
            what="two prompts accepted, one running",
        )
        accepted = {item.prompt_id for item in comfy.pending} | {comfy.running.prompt_id}
        await comfy.stop()
        comfy.reset()  # a restarted ComfyUI: empty queue, empty history
        comfy.node_seconds["ImageBlur"] = 0.4
        await asyncio.sleep(0.3)
        await comfy.start()
        for job in jobs:
            assert await wait_status(pool, job, "succeeded", "failed", within=30) == "succeeded"
    lost = [j for j in jobs if prompt_id_for(j) in accepted]
    assert lost, "the restart hit accepted prompts"
    for job in jobs:
        events = await job_events(pool, job)
        attempts = [e for e in events if isinstance(e, JobPromptLost)]
        if job in lost:
            assert [e.attempt for e in attempts] == [2]
            assert comfy.posts[prompt_id_for(job, 2)] == 1
        assert comfy.posts[prompt_id_for(job)] == 1
        stored = list((tmp_path / "data" / "outputs" / job).iterdir())
        assert [p.name for p in stored] == ["slow_00001_.png"], stored
    names = [name for (_, _, name) in comfy.files]
    assert len(names) == len(set(names)) and all(n.rpartition("-a")[0] in jobs for n in names)
    await assert_ledger(pool, owner, user, 7)


async def test_a_job_lost_more_often_than_allowed_fails_and_is_refunded(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    async with (
        ComfyServer(node_seconds={"ImageBlur": 1.0}) as comfy,
        running(pool, settings_for(tmp_path, [comfy.url], retries=8, max_attempts=1)),
    ):
        job = await create_job(pool, user, SLOW)
        await wait_until(lambda: prompt_id_for(job) in comfy.executed, what="the run")
        await comfy.stop()
        comfy.reset()
        await comfy.start()
        assert await wait_status(pool, job, "succeeded", "failed", within=30) == "failed"
    [failed] = [e for e in await job_events(pool, job) if isinstance(e, JobFailed)]
    assert "restarted" in failed.error and "GPU server" in failed.error, failed.error
    await assert_ledger(pool, owner, user, 10)
