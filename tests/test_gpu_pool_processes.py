"""The GPU pool as real processes: `rcc adapter` x N against test ComfyUI servers,
killed with -9 and started again (docs/GPU_POOL.md)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from comfy_adapter.run import prompt_id_for
from rcc.domain.events import JobPromptSubmitted
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.adapter_helpers import (
    SLOW,
    SUCCESS,
    adapter_process,
    assert_ledger,
    create_job,
    job_events,
    wait_status,
    wait_until,
)
from tests.comfy_server import ComfyServer
from tests.helpers import funded_user

# From 20 users over 4 backends and 3 adapters killed at random, as the issue asks.
JOBS = 500
USERS = 20
MAX_ATTEMPTS = 3
# A restarted adapter may die again once it has registered and worked this long. It
# counts from its registration, not its spawn: under load a start (imports, migrations
# check, pool) takes 4-8 s, and killing adapters that never got to work stalled the
# whole pool (200 jobs was all that fitted; 500 ended in ~60 s once this was fixed).
WORK_BEFORE_KILL_S = 2.0


def pool_env(cli_env: dict[str, str], urls: list[str], **extra: str) -> dict[str, str]:
    return {
        **cli_env,
        "COMFYUI_URLS": ",".join(urls),
        "RCC_COMFYUI_RETRY_BASE_S": "0.05",
        "RCC_ADAPTER_LEASE_S": "1",
        **extra,
    }


async def registered(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        found: int = await conn.fetchval("SELECT count(*) FROM adapter_instances")
    return found


async def success_lag_s(pool: asyncpg.Pool, comfy: ComfyServer, job: str) -> float:
    """Seconds from ComfyUI's execution_success to the job's recorded success."""
    entry = comfy.history[prompt_id_for(job)]
    [stamp] = [
        d["timestamp"] for kind, d in entry["status"]["messages"] if kind == "execution_success"
    ]
    async with pool.acquire() as conn:
        recorded: datetime = await conn.fetchval(
            "SELECT recorded_at FROM events WHERE stream_id = $1 AND type = 'job_succeeded'",
            f"job-{job}",
        )
    return (recorded - datetime.fromtimestamp(stamp / 1000, UTC)).total_seconds()


async def test_two_adapters_on_one_backend_each_keep_their_websocket(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Adapter one runs a long job; adapter two connects to the same backend while the
    short jobs run; then two stops, closing its socket, and one runs a last job. Every
    job learns its outcome from live messages, not from the 10 s poll. With one client
    id for both, two's socket would have taken one's registration, and its close would
    have dropped it (BEHAVIOUR.md)."""
    users = [await funded_user(pool, 10) for _ in range(5)]
    log = tmp_path / "adapters.log"
    async with ComfyServer(node_seconds={"ImageBlur": 4.0}) as comfy:
        env = pool_env(cli_env, [comfy.url], RCC_COMFYUI_POLL_S="10")
        async with adapter_process({**env, "RCC_COMFYUI_SLOTS": "1"}, log):
            await wait_until(lambda: len(comfy.ws_connects) == 1, within=60, what="one socket")
            long_job = await create_job(pool, users[0], SLOW)
            await wait_until(lambda: prompt_id_for(long_job) in comfy.executed, within=30)
            async with adapter_process({**env, "RCC_COMFYUI_SLOTS": "4"}, log) as two:
                await wait_until(lambda: len(comfy.ws_connects) == 2, within=60, what="2 sockets")
                short = [await create_job(pool, u, SUCCESS) for u in users[1:4]]
                for job in [long_job, *short]:
                    status = await wait_status(pool, job, "succeeded", "failed", within=30)
                    assert status == "succeeded"
                two.send_signal(signal.SIGTERM)  # its socket closes; one keeps its own
                assert await asyncio.wait_for(two.wait(), timeout=30) == 0
            last = await create_job(pool, users[4], SUCCESS)
            assert await wait_status(pool, last, "succeeded", "failed", within=30) == "succeeded"
        jobs = [long_job, *short, last]
        lags = {job: await success_lag_s(pool, comfy, job) for job in jobs}
        clients = {job: await client_of(pool, job) for job in jobs}
    print(f"\nexecution_success -> job succeeded (s): {[round(v, 3) for v in lags.values()]}")
    assert len(set(comfy.ws_connects)) == 2, "one socket per adapter, under its own id"
    # One ran the long job and, after two closed its socket, the last one. Which adapter
    # ran the short jobs is the claim's choice: slots are the GPU pool's (docs/BACKENDS.md),
    # counted across adapters, not each process's RCC_COMFYUI_SLOTS.
    assert clients[long_job] == clients[last]
    assert all(lag < 2.0 for lag in lags.values()), lags  # the poll would take ~10 s
    for user in users:
        await assert_ledger(pool, owner, user, 9)


async def client_of(pool: asyncpg.Pool, job: str) -> str:
    """The websocket client id of the adapter that submitted the job."""
    [submitted] = [e for e in await job_events(pool, job) if isinstance(e, JobPromptSubmitted)]
    return submitted.client_id


async def create_jobs(pool: asyncpg.Pool, users: list[str], count: int) -> list[str]:
    async def one(n: int) -> str:
        done = await execute(
            pool,
            c.CreateJob(user_id=users[n % len(users)], job_type="IMAGE_TASK", workflow=SUCCESS),
        )
        assert isinstance(done, Done), done
        return str(done.result["job_id"])

    jobs: list[str] = []
    for start in range(0, count, 25):
        jobs += await asyncio.gather(*(one(n) for n in range(start, min(count, start + 25))))
    return jobs


async def note_ready(
    pool: asyncpg.Pool, proc: Any, ready_at: list[float | None], index: int
) -> None:
    """Set `ready_at[index]` when the adapter process has registered (it is at work)."""

    async def registered_pid() -> bool:
        async with pool.acquire() as conn:
            found = await conn.fetchval("SELECT 1 FROM adapter_instances WHERE pid = $1", proc.pid)
        return found is not None

    await wait_until(registered_pid, within=60, what=f"adapter {index} to register")
    ready_at[index] = time.monotonic()


async def ended(pool: asyncpg.Pool, jobs: list[str]) -> int:
    async with pool.acquire() as conn:
        found: int = await conn.fetchval(
            """SELECT count(*) FROM streams WHERE stream_id = ANY($1::text[])
                 AND state->>'status' IN ('succeeded', 'failed', 'cancelled')""",
            [f"job-{j}" for j in jobs],
        )
    return found


async def test_three_adapters_four_backends_killed_at_random_run_every_job_once(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    users = [await funded_user(pool, JOBS // USERS + 3) for _ in range(USERS)]
    rng = random.Random(16)
    kills = 0
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(ComfyServer()) for _ in range(4)]
        env = pool_env(cli_env, [s.url for s in servers], RCC_COMFYUI_POLL_S="1")
        log = tmp_path / "adapters.log"
        procs: list[Any] = []
        for _ in range(3):
            procs.append(await stack.enter_async_context(adapter_process(env, log)))
        await wait_until(lambda: len(set().union(*(s.ws_connects for s in servers))) >= 3, 60)
        jobs = await create_jobs(pool, users, JOBS)
        started = time.monotonic()
        ready_at: list[float | None] = [started] * 3  # when each registered (None: starting)
        starting: list[asyncio.Task[None]] = []
        while (done := await ended(pool, jobs)) < JOBS:
            assert time.monotonic() - started < 150, f"{done} of {JOBS} ended"
            await asyncio.sleep(rng.uniform(0.5, 1.5))
            victim = rng.randrange(3)
            since = ready_at[victim]
            if since is None or time.monotonic() - since < WORK_BEFORE_KILL_S:
                continue  # let a restarted adapter get to work before it dies again
            procs[victim].send_signal(signal.SIGKILL)
            await procs[victim].wait()
            kills += 1
            procs[victim] = await stack.enter_async_context(adapter_process(env, log))
            ready_at[victim] = None
            starting.append(asyncio.create_task(note_ready(pool, procs[victim], ready_at, victim)))
        took = time.monotonic() - started
        for task in starting:
            task.cancel()
    print(f"\n{JOBS} jobs, 3 adapters, 4 backends, {kills} kill -9s: all ended in {took:.1f} s")
    assert kills >= 4, "the adapters were killed while the jobs ran"
    for job in jobs:
        prompts = {prompt_id_for(job, n) for n in range(1, MAX_ATTEMPTS + 1)}
        posted = sum(s.posts[p] for s in servers for p in prompts)
        ran = sum(1 for s in servers for p in s.executed if p in prompts)
        assert posted == 1 and ran == 1, f"job {job}: posted {posted}, ran {ran}"
    assert all(sum(s.posts.values()) > 0 for s in servers), "every backend took jobs"
    for job in jobs[:: max(1, JOBS // 50)]:  # the ledger saw each outcome once
        kinds = [type(e).__name__ for e in await job_events(pool, job)]
        assert kinds.count("JobSucceeded") == 1, kinds
    async with pool.acquire() as conn:
        outcomes = await conn.fetchval(
            """SELECT count(*) FROM events WHERE type IN ('job_succeeded', 'job_failed')
                 AND stream_id = ANY($1::text[])""",
            [f"job-{j}" for j in jobs],
        )
    assert outcomes == JOBS
    for user in users:
        await assert_ledger(pool, owner, user, 3)
