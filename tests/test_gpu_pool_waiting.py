"""A job not yet submitted says why it waits when the only backends with its tags are
unreachable or draining (docs/GPU_POOL.md, comfy_adapter/tag_reasons.py): on the job
page's API (`waiting_reason`) as its owner sees it, not a generic "waiting"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import httpx

from rcc.service import backend_commands as bc
from tests.adapter_helpers import (
    ADMIN,
    FAST_POOL,
    SUCCESS,
    add_backend,
    assert_ledger,
    backend_id,
    create_job,
    pool_command,
    posts_for,
    running,
    settings_for,
    stays_queued,
    wait_status,
    wait_until,
)
from tests.comfy_server.server import ComfyServer
from tests.helpers import funded_user
from tests.portal_helpers import bearer


async def test_a_job_whose_tagged_backends_are_down_or_draining_says_so(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """The only `video` backend is down: the queued video job names it as unreachable
    (while image jobs run elsewhere), then as unreachable and draining; back up but
    draining: it says it is draining; undrained: the job runs there."""
    user = await funded_user(pool, 20)
    headers = await bearer(pool, "user", user)
    video_gpu = ComfyServer()
    await video_gpu.start()
    await video_gpu.stop()  # down, on a port it will come back on
    async with ComfyServer() as plain_gpu:
        tags = {"VIDEO_TASK": frozenset({"video"})}
        settings = settings_for(tmp_path, [plain_gpu.url], job_type_tags=tags, **FAST_POOL)
        async with running(pool, settings):
            await add_backend(pool, video_gpu.url, ("video",))
            video = await create_job(pool, user, SUCCESS, "VIDEO_TASK")
            image = await create_job(pool, user, SUCCESS)
            assert await wait_status(pool, image, "succeeded", "failed") == "succeeded"
            shown: dict[str, Any] = {}

            def says(*words: str) -> Any:
                async def check() -> bool:
                    nonlocal shown
                    shown = (await client.get(f"/jobs/{video}", headers=headers)).json()
                    reason = shown.get("waiting_reason") or ""
                    return shown["status"] == "queued" and all(w in reason for w in words)

                return check

            await wait_until(says("unreachable", video_gpu.url, "(video)"), what="unreachable")
            assert shown["waiting_reason"].startswith(
                "the ComfyUI backend with the tags this job needs (video) is unreachable"
            ), shown
            video_id = await backend_id(pool, video_gpu.url)
            await pool_command(
                pool, bc.ChangeBackend(backend_id=video_id, draining=True, actor=ADMIN)
            )
            # The adapter has taken the drain in before the backend comes back.
            await wait_until(says("unreachable and draining", video_gpu.url), what="the drain")
            await video_gpu.start()
            await wait_until(says("is draining", video_gpu.url), what="the draining reason")
            assert "unreachable" not in shown["waiting_reason"], shown
            await stays_queued(pool, video, video_gpu, plain_gpu)
            await pool_command(
                pool, bc.ChangeBackend(backend_id=video_id, draining=False, actor=ADMIN)
            )
            assert await wait_status(pool, video, "succeeded", "failed") == "succeeded"
        await video_gpu.stop()
    assert (posts_for(video_gpu, video), posts_for(plain_gpu, video)) == (1, 0)
    await assert_ledger(pool, owner, user, 20 - 5 - 1)
