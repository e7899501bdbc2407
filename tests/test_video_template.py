"""A video template priced per frame is held at its estimate and captures what came out:
the ComfyUI test server's SaveVideo writes a real MP4 of the frames its Hunyuan video
latent decodes to (4 x ((length - 1) // 4) + 1, as ComfyUI's does: 24 asked, 21 made),
the adapter counts them in the file, and the core captures 21 of the 24 RCC held and
releases 3 in the same transaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from rcc.config import Settings
from rcc.video_frames import video_facts_of_bytes
from tests.adapter_helpers import assert_ledger, running, settings_for
from tests.comfy_server import ComfyServer
from tests.helpers import funded_user
from tests.portal_helpers import bearer
from tests.template_helpers import CHECKPOINT, client_for, finished, settings_with_backends

# Text-free on purpose: the frames asked are the only input, 1 RCC a frame
# (per_video_frame: seconds x fps frames, here "frames" x 1).
VIDEO_TEMPLATE: dict[str, Any] = {
    "name": "Short clip",
    "description": "A few frames of video.",
    "job_type": "VIDEO_TASK",
    "workflow": {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT}},
        "2": {
            "class_type": "EmptyHunyuanLatentVideo",
            "inputs": {"width": 16, "height": 16, "length": 25, "batch_size": 1},
        },
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["2", 0], "vae": ["1", 2]}},
        "4": {"class_type": "CreateVideo", "inputs": {"images": ["3", 0], "fps": 8.0}},
        "5": {
            "class_type": "SaveVideo",
            "inputs": {
                "video": ["4", 0],
                "filename_prefix": "clip",
                "format": "mp4",
                "codec": "h264",
            },
        },
    },
    "inputs": [
        {"name": "frames", "kind": "integer", "node": "2", "field": "length", "min": 1, "max": 97},
    ],
    "price": {"rule": "per_video_frame", "seconds": "frames", "fps": 1, "millircc": 1000},
}


async def test_a_video_template_held_at_its_estimate_captures_the_frames_made(
    pool: asyncpg.Pool,
    owner: asyncpg.Connection,
    settings: Settings,
    projector: Any,
    tmp_path: Path,
) -> None:
    admin = await bearer(pool, "admin")
    user_id = await funded_user(pool, 30)
    user = await bearer(pool, "user", user_id)
    comfy = ComfyServer(checkpoints=[CHECKPOINT])
    async with (
        comfy,
        running(
            pool, settings_for(tmp_path, [comfy.url], uploads_dir=settings.data_dir / "uploads")
        ),
        client_for(settings_with_backends(settings, [comfy.url]), pool) as http,
    ):
        published = await http.post("/admin/templates", json=VIDEO_TEMPLATE, headers=admin)
        assert published.status_code == 201, published.text
        created = await http.post(
            "/jobs",
            json={"template": published.json()["id"], "inputs": {"frames": 24}},
            headers=user,
        )
        assert created.status_code == 201, created.text
        assert created.json()["cost_rcc"] == 24  # the estimate: 24 frames asked
        job = await finished(http, user, created.json()["id"])
        assert job["status"] == "succeeded", job

        # The backend reported a real MP4 as ComfyUI's SaveVideo does (PreviewVideo).
        [prompt_id] = list(comfy.history)
        [output] = comfy.history[prompt_id]["outputs"].values()
        assert output["animated"] == [True] and output["images"][0]["filename"].endswith(".mp4")
        [uri] = job["output_uris"]
        video = await http.get(uri, headers=user)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video_facts_of_bytes(video.content).frames == 21
        assert (job["cost_rcc"], job["held_rcc"], job["charged_rcc"]) == (24, 0, 21), job

        page = await http.get(f"/app/jobs/{job['id']}", headers=user)
        assert page.status_code == 200, page.text
        assert "<dd data-held>24 RCC" in page.text and "<dd data-charged>21 RCC" in page.text
        assert "3 RCC returned" in page.text and "<video" in page.text
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type, data FROM events WHERE stream_id LIKE 'wallet-%'"
            " AND data->>'job' = $1 ORDER BY position",
            job["id"],
        )
        ledger = await conn.fetch(
            "SELECT reason, delta FROM rcc_ledger WHERE job_id = $1 ORDER BY created_at, id",
            job["id"],
        )
    assert [r["type"] for r in rows] == ["credits_reserved", "credits_released"]
    assert (rows[1]["data"]["amount"], rows[1]["data"]["captured"]) == (3, 21)
    assert [(r["reason"], r["delta"]) for r in ledger] == [("JOB_RESERVE", -24), ("JOB_RELEASE", 3)]
    await assert_ledger(pool, owner, user_id, 30 - 21)  # balance, and `rcc audit verify`
