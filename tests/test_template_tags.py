"""A template may require backend tags (issue 16's): its jobs record them at creation
and the claim honours them, against two ComfyUI test servers on real PostgreSQL. A job
of a template requiring `video` waits while only an untagged GPU is live (and holds no
one up), then runs on the GPU tagged `video` once it joins the pool."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import asyncpg

from rcc.config import Settings
from tests.adapter_helpers import (
    FAST_POOL,
    SUCCESS,
    add_backend,
    assert_ledger,
    create_job,
    running,
    settings_for,
    stays_queued,
    wait_status,
    wait_until,
)
from tests.comfy_server.server import ComfyServer
from tests.helpers import funded_user
from tests.portal_helpers import bearer
from tests.template_helpers import client_for, settings_with_backends

# The recorded run_success workflow (EmptyImage -> ImageInvert -> SaveImage), which any
# backend can run: only the tag decides where it may go.
NEEDS_VIDEO: dict[str, Any] = {
    "name": "Inverted square",
    "description": "Runs only where a GPU is tagged video.",
    "job_type": "IMAGE_TASK",
    "workflow": copy.deepcopy(SUCCESS),
    "inputs": [],
    "price": {"rule": "fixed", "rcc": 2},
    "requires_tags": ["video"],
}


async def test_a_template_requiring_video_runs_only_on_a_backend_tagged_video(
    pool: asyncpg.Pool,
    owner: asyncpg.Connection,
    settings: Settings,
    projector: Any,
    tmp_path: Path,
) -> None:
    admin = await bearer(pool, "admin")
    user_id = await funded_user(pool, 10)
    user = await bearer(pool, "user", user_id)
    async with ComfyServer() as plain_gpu, ComfyServer() as video_gpu:
        adapter = settings_for(tmp_path, [plain_gpu.url], **FAST_POOL)
        portal = settings_with_backends(settings, [plain_gpu.url])
        async with running(pool, adapter), client_for(portal, pool) as http:
            bad = {**NEEDS_VIDEO, "requires_tags": ["Video GPU"]}
            refused = await http.post("/admin/templates", json=bad, headers=admin)
            assert refused.status_code == 422 and "is not a tag" in refused.text
            published = await http.post("/admin/templates", json=NEEDS_VIDEO, headers=admin)
            assert published.status_code == 201, published.text
            shown = await http.get(f"/templates/{published.json()['id']}", headers=user)
            assert shown.json()["requires_tags"] == ["video"]
            created = await http.post(
                "/jobs", json={"template": published.json()["id"], "inputs": {}}, headers=user
            )
            assert created.status_code == 201, created.text
            tagged = created.json()["id"]
            # A raw job behind it goes to the untagged GPU; the tagged job does not.
            raw = await create_job(pool, user_id, SUCCESS)
            assert await wait_status(pool, raw, "succeeded", "failed") == "succeeded"
            await stays_queued(pool, tagged, plain_gpu, video_gpu)
            wanted = "no live ComfyUI backend has the tags this job needs (video)"

            async def says_why() -> bool:
                shown = (await http.get(f"/jobs/{tagged}", headers=user)).json()
                return str(shown.get("waiting_reason") or "").startswith(wanted)

            # The job says which tags of its template no backend has (not "waiting").
            await wait_until(says_why, what="the job to name the tags it waits for")
            assert len(plain_gpu.history) == 1 and not video_gpu.history

            await add_backend(pool, video_gpu.url, ("video",))
            assert await wait_status(pool, tagged, "succeeded", "failed") == "succeeded"
            assert len(video_gpu.history) == 1 and len(plain_gpu.history) == 1
    async with pool.acquire() as conn:
        recorded = await conn.fetchval(
            "SELECT data->'required_tags' FROM events WHERE type = 'job_created'"
            " AND data->>'job_id' = $1",
            tagged,
        )
    assert recorded == ["video"]  # on the job itself, whatever the template says later
    await assert_ledger(pool, owner, user_id, 10 - 2 - 1)
