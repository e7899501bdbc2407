"""What the portal shows of the adapter's work: outputs (owner only), logs, waiting reasons."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from rcc.config import Settings
from tests.adapter_helpers import SLOW, SUCCESS, running, settings_for
from tests.comfy_server import ComfyServer
from tests.conftest import portal_client
from tests.portal_helpers import bearer, grant, sign_up


async def wait_job(http: httpx.AsyncClient, job_id: str, *statuses: str) -> dict[str, Any]:
    for _ in range(750):
        job: dict[str, Any] = (await http.get(f"/jobs/{job_id}")).json()
        if job["status"] in statuses:
            return job
        await asyncio.sleep(0.02)
    raise AssertionError(f"job stayed {job['status']}")


async def test_owner_gets_outputs_and_logs_others_get_404(
    portal_app: Any, pool: asyncpg.Pool, settings: Settings, tmp_path: Path
) -> None:
    assert settings.data_dir == tmp_path / "data"  # the adapter writes where the portal reads
    async with (
        ComfyServer() as comfy,
        running(pool, settings_for(tmp_path, [comfy.url])),
        portal_client(portal_app) as alice_http,
        portal_client(portal_app) as bob_http,
    ):
        alice = await sign_up(alice_http)
        await sign_up(bob_http)
        await grant(pool, alice.user_id, 5)
        created = await alice_http.post(
            "/jobs", json={"type": "IMAGE_TASK", "workflow": SUCCESS}, headers=alice.headers
        )
        assert created.status_code == 201, created.text
        job = await wait_job(alice_http, created.json()["id"], "succeeded", "failed")
        assert job["status"] == "succeeded" and job["backend"] == comfy.url
        assert job["duration_ms"] is not None and job["waiting_reason"] is None
        [uri] = job["output_uris"]
        image = await alice_http.get(uri)
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert (
            image.content
            == comfy.files[("output", "", f"{job['id']}-a1_protocol_capture_00001_.png")]
        )
        assert (await bob_http.get(uri)).status_code == 404
        for bad in (
            f"/outputs/{job['id']}/..%2F..%2Fsession_secret",
            f"/outputs/{job['id']}/.protocol_capture_00001_.png.part",
            f"/outputs/{job['id']}/nothing.png",
            "/outputs/..%2F..%2Fdata/session_secret",
        ):
            assert (await alice_http.get(bad)).status_code == 404, bad

        logs = (await alice_http.get(f"/jobs/{job['id']}/logs")).json()
        kinds = [(line["source"], line["kind"]) for line in logs["lines"]]
        assert kinds[0] == ("rcc", "created") and kinds[-1] == ("rcc", "succeeded")
        assert ("comfyui", "execution_start") in kinds and ("comfyui", "executed") in kinds
        assert logs["prompt_id"] == job["prompt_id"]
        assert (await bob_http.get(f"/jobs/{job['id']}/logs")).status_code == 404
        admin = await bearer(pool, "admin")
        as_admin = await bob_http.get(f"/jobs/{job['id']}/logs", headers=admin)
        assert as_admin.status_code == 200 and as_admin.json()["lines"] == logs["lines"]
        anonymous = await portal_client(portal_app).get(f"/jobs/{job['id']}/logs")
        assert anonymous.status_code == 401


async def test_queued_job_says_why_it_waits_and_cancel_interrupts(
    portal_app: Any, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    async with portal_client(portal_app) as http:
        member = await sign_up(http)
        await grant(pool, member.user_id, 5)
        first = await http.post(
            "/jobs", json={"type": "IMAGE_TASK", "workflow": SLOW}, headers=member.headers
        )
        job_id = first.json()["id"]
        shown = (await http.get(f"/jobs/{job_id}")).json()
        assert shown["waiting_reason"].startswith("the ComfyUI adapter is not running")
        async with running(pool, settings_for(tmp_path, [])):
            reason = (
                "no ComfyUI backend is configured (COMFYUI_URLS is empty "
                "and none was added in /admin/backends)"
            )
            for _ in range(500):
                shown = (await http.get(f"/jobs/{job_id}")).json()
                if shown["status"] == "queued" and shown["waiting_reason"] == reason:
                    break
                await asyncio.sleep(0.02)
            assert (shown["status"], shown["waiting_reason"]) == ("queued", reason)
        async with (
            ComfyServer(node_seconds={"ImageBlur": 30}) as comfy,
            running(pool, settings_for(tmp_path, [comfy.url])),
        ):
            running_job = await wait_job(http, job_id, "running")
            cancelled = await http.post(f"/jobs/{job_id}/cancel", headers=member.headers)
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
            pid = running_job["prompt_id"]
            for _ in range(500):
                if pid in comfy.history:
                    break
                await asyncio.sleep(0.02)
            assert pid in comfy.interrupts
            assert comfy.history[pid]["status"]["messages"][-1][0] == "execution_interrupted"
        assert (await http.get("/me")).json()["balance_rcc"] == 5
        logs = (await http.get(f"/jobs/{job_id}/logs")).json()["lines"]
        assert [line["kind"] for line in logs if line["source"] == "rcc"][-1] == "cancelled"
