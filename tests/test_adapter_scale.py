"""1,000 queued jobs over 4 test backends: all dispatched, all accounted for."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import asyncpg

from comfy_adapter.run import prompt_id_for
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.adapter_helpers import SUCCESS, assert_ledger, running, settings_for, wait_until
from tests.comfy_server import ComfyServer
from tests.helpers import funded_user

JOBS = 1000
USERS = 4


async def succeeded(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        found: int = await conn.fetchval(
            """SELECT count(*) FROM streams
                WHERE stream_id LIKE 'job-%' AND state->>'status' = 'succeeded'"""
        )
    return found


async def test_a_thousand_queued_jobs_over_four_backends(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    users = [await funded_user(pool, JOBS // USERS + 5) for _ in range(USERS)]
    jobs: list[str] = []
    for n in range(JOBS):  # all queued before the adapter starts
        done = await execute(
            pool, c.CreateJob(user_id=users[n % USERS], job_type="IMAGE_TASK", workflow=SUCCESS)
        )
        assert isinstance(done, Done), done
        jobs.append(str(done.result["job_id"]))
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(ComfyServer()) for _ in range(4)]
        settings = settings_for(tmp_path, [s.url for s in servers])
        await stack.enter_async_context(running(pool, settings))
        count = 0

        async def poll() -> None:
            nonlocal count
            while count < JOBS:
                count = await succeeded(pool)
                await asyncio.sleep(0.1)

        await asyncio.wait_for(poll(), timeout=120)
        await wait_until(lambda: count == JOBS, what="every job to succeed")
    posts = [s.posts for s in servers]
    assert all(sum(p.values()) > 0 for p in posts), "every backend took jobs"
    for job in jobs:
        pid = prompt_id_for(job)
        assert sum(p[pid] for p in posts) == 1, f"job {job} was submitted once"
    assert sum(sum(p.values()) for p in posts) == JOBS
    outputs = tmp_path / "data" / "outputs"
    assert sum(1 for _ in outputs.glob("*/*.png")) == JOBS
    for user in users:
        await assert_ledger(pool, owner, user, 5)
