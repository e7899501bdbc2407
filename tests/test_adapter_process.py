"""`rcc adapter` as a real process, killed with SIGKILL mid-job and started again."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg

from comfy_adapter.run import prompt_id_for
from tests.adapter_helpers import (
    SLOW,
    adapter_process,
    assert_ledger,
    create_job,
    job_events,
    status_of,
    wait_status,
    wait_until,
)
from tests.comfy_server import ComfyServer
from tests.helpers import funded_user


async def test_adapter_killed_mid_job_is_reconciled_without_a_second_submission(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    async with ComfyServer(node_seconds={"ImageBlur": 2.0}) as comfy:
        env = {
            **cli_env,
            "COMFYUI_URLS": comfy.url,
            "RCC_COMFYUI_RETRY_BASE_S": "0.05",
            "RCC_COMFYUI_POLL_S": "1",
            "RCC_ADAPTER_LEASE_S": "1",
        }
        log = tmp_path / "adapter.log"
        async with adapter_process(env, log) as first:
            job = await create_job(pool, user, SLOW)
            pid = prompt_id_for(job)
            await wait_until(lambda: pid in comfy.executed, within=60, what="the run to start")
            first.send_signal(signal.SIGKILL)
            assert await first.wait() == -signal.SIGKILL
        assert await status_of(pool, job) in ("queued", "running")
        assert pid not in comfy.history, "ComfyUI is still running it"
        async with adapter_process(env, log) as second:
            status = await wait_status(pool, job, "succeeded", "failed", within=60)
            assert status == "succeeded", log.read_text()[-3000:]
            second.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.wait(), timeout=30) == 0
    assert comfy.posts[pid] == 1, "submitted once, followed by both lives"
    assert len(comfy.ws_connects) == 2, "each adapter process has its own client id"
    kinds = [type(e).__name__ for e in await job_events(pool, job)]
    assert kinds.count("JobPromptSubmitted") == 1 and kinds.count("JobSucceeded") == 1
    assert (Path(env["RCC_DATA_DIR"]) / "outputs" / job / "slow_00001_.png").is_file()
    await assert_ledger(pool, owner, user, 9)
