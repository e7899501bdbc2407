"""The adapter obeys the GPU pool at run time, against ComfyUI test servers on real
PostgreSQL: a drained backend finishes its running job and gets no new one, an added
backend takes work within a refresh, a removed one gets nothing; jobs go only to
backends with the tags their type requires (and say why they wait when none has
them); the health admins see is the test server's own /system_stats."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import httpx

from comfy_adapter.worker import AdapterWorker
from projections.job_waiting import waiting_reason
from rcc.service import backend_commands as bc
from tests.adapter_helpers import (
    ADMIN,
    FAST_POOL,
    SLOW,
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
from tests.comfy_server import captures
from tests.comfy_server.server import ComfyServer
from tests.helpers import funded_user
from tests.portal_helpers import bearer


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
            await stays_queued(pool, waiting, first_gpu)

            async def says_draining() -> bool:
                async with pool.acquire() as conn:
                    said = await waiting_reason(conn)
                return said.startswith("every reachable ComfyUI backend")

            await wait_until(says_draining, what="the drain in the waiting reason")
            # The drained backend's running job finishes there.
            assert await wait_status(pool, long_job, "succeeded", "failed") == "succeeded"
            await stays_queued(pool, waiting, first_gpu)

            await add_backend(pool, second_gpu.url)
            assert await wait_status(pool, waiting, "succeeded", "failed") == "succeeded"

            second_id = await backend_id(pool, second_gpu.url)
            await pool_command(pool, bc.RemoveBackend(backend_id=second_id, actor=ADMIN))
            await wait_until(lambda: known(worker, second_gpu.url) is None, what="the removal")
            last = await create_job(pool, user, SUCCESS)
            await stays_queued(pool, last, first_gpu, second_gpu)
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
            admin = await bearer(pool, "admin")

            async def shown_waiting() -> bool:
                # The jobs read model (projector) and the adapter's reasons both catch up.
                page = (await client.get("/admin/jobs", headers=admin)).json()["items"]
                shown = next(j for j in page if j["id"] == video)
                return bool(
                    shown["status"] == "queued" and shown["waiting_reason"].startswith(reason)
                )

            await wait_until(shown_waiting, what="the video job's reason on /admin/jobs")
            async with pool.acquire() as conn:
                said = await waiting_reason(conn, job_type="VIDEO_TASK")
            assert said.startswith(reason)

            await add_backend(pool, video_gpu.url, ("video",))
            assert await wait_status(pool, video, "succeeded", "failed") == "succeeded"
            more = [await create_job(pool, user, SUCCESS, "VIDEO_TASK") for _ in range(3)]
            more += [await create_job(pool, user, SUCCESS) for _ in range(3)]
            for job in more:
                assert await wait_status(pool, job, "succeeded", "failed") == "succeeded"

            stats = captures.body("http/system_stats.json")["devices"][0]
            listed: list[dict[str, Any]] = []

            async def idle_and_healthy() -> bool:
                # A reading taken while the last job still ran may be the newest for up
                # to `health_s`: wait for one taken after every job ended.
                nonlocal listed
                listed = (await client.get("/admin/backends", headers=admin)).json()["items"]
                return len(listed) == 2 and all(
                    b["health"] == "healthy" and (b["queue_running"], b["queue_pending"]) == (0, 0)
                    for b in listed
                )

            await wait_until(idle_and_healthy, what="both backends healthy with empty queues")
    assert {b["url"]: b["tags"] for b in listed} == {plain_gpu.url: [], video_gpu.url: ["video"]}
    for shown_backend in listed:
        assert shown_backend["health"] == "healthy"
        assert (shown_backend["vram_total"], shown_backend["vram_free"]) == (
            stats["vram_total"],
            stats["vram_free"],
        )
        assert shown_backend["device"] == stats["name"]
    videos = [video, *more[:3]]
    assert [posts_for(video_gpu, j) for j in videos] == [1, 1, 1, 1]
    assert [posts_for(plain_gpu, j) for j in videos] == [0, 0, 0, 0]
    assert posts_for(plain_gpu, image) + posts_for(video_gpu, image) == 1
    await assert_ledger(pool, owner, user, 100 - 4 * 5 - 4 * 1)
