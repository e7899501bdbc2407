"""The adapter obeys the GPU pool at run time, against ComfyUI test servers on real
PostgreSQL: a drained backend finishes its running job and gets no new one, an added
backend takes work within a refresh, a removed one gets nothing; jobs go only to
backends with the tags their type requires (and say why they wait when none has
them); the health admins see is the test server's own /system_stats."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from comfy_adapter.worker import AdapterWorker
from projections.job_waiting import waiting_reason
from rcc.service import backend_commands as bc
from rcc.service.backend_pool import usable_backends
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.adapter_helpers import (
    SLOW,
    SUCCESS,
    assert_ledger,
    create_job,
    posts_for,
    running,
    settings_for,
    status_of,
    wait_status,
    wait_until,
)
from tests.comfy_server import captures
from tests.comfy_server.server import ComfyServer
from tests.helpers import funded_user
from tests.portal_helpers import bearer

ADMIN = "ops@example.com"
FAST_POOL = {"pool_refresh_s": 0.1, "health_s": 0.2}


async def pool_command(pool: asyncpg.Pool, command: Any) -> None:
    done = await execute(pool, command, metadata={"actor": ADMIN})
    assert isinstance(done, Done), done


async def backend_id(pool: asyncpg.Pool, url: str) -> str:
    async with pool.acquire() as conn:
        return next(b.id for b in await usable_backends(conn) if b.url == url)


async def add(pool: asyncpg.Pool, url: str, tags: tuple[str, ...] = ()) -> None:
    command = bc.AddBackend(backend_id=str(uuid.uuid4()), url=url, slots=2, tags=tags, actor=ADMIN)
    await pool_command(pool, command)


async def stays_queued(pool: asyncpg.Pool, job_id: str, seconds: float = 0.6) -> None:
    """Several pool refreshes and dispatch rounds pass; the job is still not sent."""
    await asyncio.sleep(seconds)
    assert await status_of(pool, job_id) == "queued"


def known(worker: AdapterWorker, url: str) -> Any:
    assert worker.backends is not None
    return worker.backends.get(url)


async def test_drain_add_and_remove_take_effect_while_the_adapter_runs(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path
) -> None:
    user = await funded_user(pool, 10)
    async with (
        ComfyServer(node_seconds={"ImageBlur": 1.5}) as first_gpu,
        ComfyServer() as second_gpu,
    ):
        settings = settings_for(tmp_path, [first_gpu.url], **FAST_POOL)
        async with running(pool, settings) as worker:
            long_job = await create_job(pool, user, SLOW)
            await wait_until(lambda: first_gpu.started.is_set(), what="the long job to start")
            first_id = await backend_id(pool, first_gpu.url)
            await pool_command(
                pool, bc.ChangeBackend(backend_id=first_id, draining=True, actor=ADMIN)
            )
            await wait_until(lambda: known(worker, first_gpu.url).draining, what="the drain")
            waiting = await create_job(pool, user, SUCCESS)
            await stays_queued(pool, waiting)
            async with pool.acquire() as conn:
                assert (await waiting_reason(conn)).startswith("every reachable ComfyUI backend")
            # The drained backend's running job finishes there.
            assert await wait_status(pool, long_job, "succeeded", "failed") == "succeeded"
            await stays_queued(pool, waiting, 0.3)

            await add(pool, second_gpu.url)
            assert await wait_status(pool, waiting, "succeeded", "failed") == "succeeded"

            second_id = await backend_id(pool, second_gpu.url)
            await pool_command(pool, bc.RemoveBackend(backend_id=second_id, actor=ADMIN))
            await wait_until(lambda: known(worker, second_gpu.url) is None, what="the removal")
            last = await create_job(pool, user, SUCCESS)
            await stays_queued(pool, last)
            await pool_command(
                pool, bc.ChangeBackend(backend_id=first_id, draining=False, actor=ADMIN)
            )
            assert await wait_status(pool, last, "succeeded", "failed") == "succeeded"
    assert [posts_for(first_gpu, j) for j in (long_job, waiting, last)] == [1, 0, 1]
    assert [posts_for(second_gpu, j) for j in (long_job, waiting, last)] == [0, 1, 0]
    await assert_ledger(pool, owner, user, 10 - 3)


async def test_jobs_go_only_to_backends_with_their_tags_and_health_is_system_stats(
    pool: asyncpg.Pool, owner: asyncpg.Connection, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    user = await funded_user(pool, 100)
    async with ComfyServer() as plain_gpu, ComfyServer() as video_gpu:
        settings = settings_for(
            tmp_path,
            [plain_gpu.url],
            job_type_tags={"VIDEO_TASK": frozenset({"video"})},
            **FAST_POOL,
        )
        async with running(pool, settings):
            video = await create_job(pool, user, SUCCESS, "VIDEO_TASK")
            image = await create_job(pool, user, SUCCESS)
            # The image job behind it is not held up by the video job that cannot go.
            assert await wait_status(pool, image, "succeeded", "failed") == "succeeded"
            reason = "no live ComfyUI backend has the tags this job needs (video)"
            for _ in range(200):
                async with pool.acquire() as conn:
                    said = await waiting_reason(conn, job_type="VIDEO_TASK")
                if said.startswith(reason):
                    break
                await asyncio.sleep(0.05)
            assert said.startswith(reason)
            admin = await bearer(pool, "admin")
            page = (await client.get("/admin/jobs", headers=admin)).json()["items"]
            shown = next(j for j in page if j["id"] == video)
            assert shown["status"] == "queued" and shown["waiting_reason"].startswith(reason)

            await add(pool, video_gpu.url, ("video",))
            assert await wait_status(pool, video, "succeeded", "failed") == "succeeded"
            more = [await create_job(pool, user, SUCCESS, "VIDEO_TASK") for _ in range(3)]
            more += [await create_job(pool, user, SUCCESS) for _ in range(3)]
            for job in more:
                assert await wait_status(pool, job, "succeeded", "failed") == "succeeded"

            stats = captures.body("http/system_stats.json")["devices"][0]
            listed: list[dict[str, Any]] = []
            for _ in range(200):
                listed = (await client.get("/admin/backends", headers=admin)).json()["items"]
                if len(listed) == 2 and all(b["health"] == "healthy" for b in listed):
                    break
                await asyncio.sleep(0.05)
    assert {b["url"]: b["tags"] for b in listed} == {plain_gpu.url: [], video_gpu.url: ["video"]}
    for shown_backend in listed:
        assert shown_backend["health"] == "healthy"
        assert (shown_backend["vram_total"], shown_backend["vram_free"]) == (
            stats["vram_total"],
            stats["vram_free"],
        )
        assert shown_backend["device"] == stats["name"]
        assert (shown_backend["queue_running"], shown_backend["queue_pending"]) == (0, 0)
    videos = [video, *more[:3]]
    assert [posts_for(video_gpu, j) for j in videos] == [1, 1, 1, 1]
    assert [posts_for(plain_gpu, j) for j in videos] == [0, 0, 0, 0]
    assert posts_for(plain_gpu, image) + posts_for(video_gpu, image) == 1
    await assert_ledger(pool, owner, user, 100 - 4 * 5 - 4 * 1)
