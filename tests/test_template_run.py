"""A template with a text input, a seed, a bounded number and an image upload runs end
to end against the ComfyUI test server: the upload reaches the backend (through its own
POST /upload/image) before the prompt that names it, and the outputs come back."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import asyncpg

from rcc.config import Settings
from tests.adapter_helpers import assert_ledger, running, settings_for
from tests.comfy_server import ComfyServer
from tests.helpers import funded_user
from tests.portal_helpers import bearer
from tests.template_helpers import (
    CHECKPOINT,
    client_for,
    finished,
    png,
    settings_with_backends,
    template_spec,
    upload,
)


async def test_a_template_with_an_upload_runs_end_to_end(
    pool: asyncpg.Pool,
    owner: asyncpg.Connection,
    settings: Settings,
    projector: Any,
    tmp_path: Path,
) -> None:
    admin = await bearer(pool, "admin")
    user_id = await funded_user(pool, 10)
    user, other = (
        await bearer(pool, "user", user_id),
        await bearer(pool, "user", await funded_user(pool, 1)),
    )
    comfy = ComfyServer(checkpoints=[CHECKPOINT])
    image = png(64, 48)
    async with (
        comfy,
        running(
            pool, settings_for(tmp_path, [comfy.url], uploads_dir=settings.data_dir / "uploads")
        ),
        client_for(settings_with_backends(settings, [comfy.url]), pool) as http,
    ):
        template_id = (
            await http.post("/admin/templates", json=template_spec(), headers=admin)
        ).json()["id"]
        upload_id = (await upload(http, user, image, "cat.png")).json()["id"]
        inputs = {"prompt": "a cat in a hat", "seed": 42, "denoise": 0.5, "image": upload_id}
        created = await http.post(
            "/jobs", json={"template": template_id, "inputs": inputs}, headers=user
        )
        assert created.status_code == 201, created.text
        assert created.json()["cost_rcc"] == 3 and created.json()["template"]["version"] == 1
        job = await finished(http, user, created.json()["id"])
        assert job["status"] == "succeeded", job

        name = f"rcc_upload_{upload_id}.png"
        [prompt_id] = list(comfy.history)
        assert comfy.arrivals == [f"upload {name}", f"prompt {prompt_id}"]  # upload first
        assert comfy.files[("input", "", name)] == image
        sent = comfy.history[prompt_id]["prompt"][2]
        assert sent["4"]["inputs"]["image"] == name
        assert sent["2"]["inputs"]["text"] == "a cat in a hat"
        assert (sent["6"]["inputs"]["seed"], sent["6"]["inputs"]["denoise"]) == (42, 0.5)
        assert sent["6"]["inputs"]["steps"] == 10  # the default

        [uri] = job["output_uris"]
        output = await http.get(uri, headers=user)
        assert output.status_code == 200 and output.headers["content-type"] == "image/png"
        assert output.headers["x-content-type-options"] == "nosniff"
        assert "default-src 'none'" in output.headers["content-security-policy"]
        bundle = await http.get(f"/jobs/{job['id']}/outputs.zip", headers=user)
        assert bundle.status_code == 200 and bundle.headers["content-type"] == "application/zip"
        with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
            assert archive.read(uri.rsplit("/", 1)[1]) == output.content
        assert (await http.get(f"/jobs/{job['id']}/outputs.zip", headers=other)).status_code == 404
    await assert_ledger(pool, owner, user_id, 10 - 3)


async def test_a_metered_template_holds_its_estimate_and_captures_what_the_outputs_show(
    pool: asyncpg.Pool,
    owner: asyncpg.Connection,
    settings: Settings,
    projector: Any,
    tmp_path: Path,
) -> None:
    """RCC per megapixel per step: the form asks for 1,000 x 1,000 at 10 steps, so the
    job holds ceil(1 MP x 10 x 300 milli-RCC) = 3 RCC; the backend makes a 2 x 2 image,
    so success captures the rule's minimum, 1 RCC, and the other 2 come back in the same
    transaction as a JOB_RELEASE that settles the capture."""
    admin = await bearer(pool, "admin")
    user_id = await funded_user(pool, 10)
    user = await bearer(pool, "user", user_id)
    comfy = ComfyServer(checkpoints=[CHECKPOINT])
    price = {"rule": "per_megapixel_step", "width": 1000, "height": 1000, "steps": "steps"}
    spec = template_spec(price={**price, "millircc": 300, "min_rcc": 1})
    async with (
        comfy,
        running(
            pool, settings_for(tmp_path, [comfy.url], uploads_dir=settings.data_dir / "uploads")
        ),
        client_for(settings_with_backends(settings, [comfy.url]), pool) as http,
    ):
        published = await http.post("/admin/templates", json=spec, headers=admin)
        assert published.status_code == 201, published.text
        upload_id = (await upload(http, user, png(16, 16), "cat.png")).json()["id"]
        inputs = {"prompt": "a barn", "image": upload_id}
        created = await http.post(
            "/jobs", json={"template": published.json()["id"], "inputs": inputs}, headers=user
        )
        assert created.status_code == 201, created.text
        assert created.json()["cost_rcc"] == 3
        job = await finished(http, user, created.json()["id"])
        assert job["status"] == "succeeded", job
        assert (job["held_rcc"], job["charged_rcc"]) == (0, 1), job
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type, data FROM events WHERE stream_id LIKE 'wallet-%'"
            " AND data->>'job' = $1 ORDER BY position",
            job["id"],
        )
    assert [r["type"] for r in rows] == ["credits_reserved", "credits_released"]
    released = rows[1]["data"]
    assert (released["amount"], released["captured"]) == (2, 1)
    await assert_ledger(pool, owner, user_id, 10 - 1)
