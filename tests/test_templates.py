"""Templates over HTTP: publish, new version, unpublish; jobs built from one with the
inputs bound and checked (before anything is reserved) against a ComfyUI test server's
own /object_info; the captured validation errors each refused before any reserve."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from rcc.config import Settings
from rcc.projector.wait import wait_for
from rcc.service import ops_commands as oc
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.sample_templates import TEXT_TO_IMAGE_ID, publish_samples
from tests.comfy_server import ComfyServer, captures
from tests.helpers import balance_of, funded_user, snapshot
from tests.portal_helpers import bearer
from tests.template_helpers import (
    CHECKPOINT,
    client_for,
    png,
    settings_with_backends,
    template_spec,
    upload,
)


def _no_upload_spec() -> dict[str, Any]:
    spec = template_spec()
    spec["inputs"] = [i for i in spec["inputs"] if i["kind"] != "image"]
    return spec


async def test_publish_new_version_unpublish_and_past_jobs_unharmed(
    pool: asyncpg.Pool, settings: Settings, projector: Any
) -> None:
    admin = await bearer(pool, "admin")
    user_id = await funded_user(pool, 20)
    user = await bearer(pool, "user", user_id)
    async with client_for(settings, pool) as http:
        broken = template_spec()
        broken["inputs"][0]["node"] = "42"
        refused = await http.post("/admin/templates", json=broken, headers=admin)
        assert refused.status_code == 422, refused.text
        assert "no node '42'" in refused.json()["detail"]
        assert (
            await http.post("/admin/templates", json=template_spec(), headers=user)
        ).status_code == 403

        made = await http.post("/admin/templates", json=_no_upload_spec(), headers=admin)
        assert made.status_code == 201, made.text
        template_id = made.json()["id"]
        assert made.json()["version"] == 1
        listed = (await http.get("/templates", headers=user)).json()
        shown = next(t for t in listed["items"] if t["id"] == template_id)
        assert shown["name"] == "Image to image" and shown["price"] == {"rule": "fixed", "rcc": 3}
        assert {i["name"] for i in shown["inputs"]} == {"prompt", "seed", "denoise", "steps"}
        assert all("node" not in i for i in shown["inputs"])  # the workflow stays ours

        job = await http.post(
            "/jobs",
            json={"template": template_id, "inputs": {"prompt": "a red barn", "seed": 7}},
            headers=user,
        )
        assert job.status_code == 201, job.text
        assert job.json()["cost_rcc"] == 3
        assert job.json()["template"] == {"id": template_id, "version": 1, "name": "Image to image"}

        revised = await http.put(
            f"/admin/templates/{template_id}",
            json={**_no_upload_spec(), "price": {"rule": "fixed", "rcc": 4}},
            headers=admin,
        )
        assert revised.status_code == 200 and revised.json()["version"] == 2
        assert (await http.get(f"/templates/{template_id}", headers=user)).json()["version"] == 2
        old = await http.get(f"/templates/{template_id}?version=1", headers=user)
        assert old.json()["price"]["rcc"] == 3

        gone = await http.delete(f"/admin/templates/{template_id}", headers=admin)
        assert gone.status_code == 200 and gone.json()["published"] is False
        assert (await http.get(f"/templates/{template_id}", headers=user)).status_code == 404
        again = await http.post(
            "/jobs", json={"template": template_id, "inputs": {"prompt": "x"}}, headers=user
        )
        assert again.status_code == 404
        past = await http.get(f"/jobs/{job.json()['id']}", headers=user)
        assert past.json()["template"] == {
            "id": template_id,
            "version": 1,
            "name": "Image to image",
        }
    async with pool.acquire() as conn:
        assert await balance_of(conn, user_id) == 20 - 3
        stored = await conn.fetchrow(
            "SELECT data FROM events WHERE stream_id = $1 AND type = 'job_created'",
            f"job-{job.json()['id']}",
        )
    assert stored["data"]["template"] == template_id and stored["data"]["template_version"] == 1
    assert stored["data"]["template_inputs"]["seed"] == 7  # the values bound are recorded


async def test_bad_inputs_and_uploads_are_refused_with_nothing_reserved(
    pool: asyncpg.Pool, settings: Settings, projector: Any
) -> None:
    admin = await bearer(pool, "admin")
    user_id, other_id = await funded_user(pool, 10), await funded_user(pool, 10)
    user, other = await bearer(pool, "user", user_id), await bearer(pool, "user", other_id)
    comfy = ComfyServer(checkpoints=[CHECKPOINT])
    async with comfy, client_for(settings_with_backends(settings, [comfy.url]), pool) as http:
        template_id = (
            await http.post("/admin/templates", json=template_spec(), headers=admin)
        ).json()["id"]
        mine = (await upload(http, user, png())).json()["id"]
        theirs = (await upload(http, other, png())).json()["id"]
        video = await upload(
            http,
            user,
            b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64),
            "clip.mp4",
            "video/mp4",
        )
        assert video.status_code == 201 and video.json()["kind"] == "video"
        async with pool.acquire() as conn:
            before = await snapshot(conn)
        good = {"prompt": "a cat", "image": mine}
        cases = [
            ({**good, "denoise": 5}, 422, "denoise"),
            ({**good, "steps": 2.5}, 422, "steps"),
            ({**good, "prompt": "x" * 201}, 422, "prompt"),
            ({**good, "colour": "red"}, 422, "colour"),
            ({"prompt": "a cat"}, 422, "image"),
            ({**good, "image": video.json()["id"]}, 422, "image"),
            ({**good, "image": theirs}, 404, None),
        ]
        for inputs, status, named in cases:
            answer = await http.post(
                "/jobs", json={"template": template_id, "inputs": inputs}, headers=user
            )
            assert answer.status_code == status, (inputs, answer.text)
            if named:
                assert answer.json()["error"] == "invalid_inputs"
                assert named in answer.json()["inputs"], answer.json()
        async with pool.acquire() as conn:
            assert await snapshot(conn) == before  # no reserve, no job, no key
        ok = await http.post("/jobs", json={"template": template_id, "inputs": good}, headers=user)
        assert ok.status_code == 201, ok.text
        assert ok.headers["x-workflow-check"] == "live"
    assert comfy.arrivals == []  # nothing was sent: the adapter is not running here


def _recorded_prompts() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for record in captures.validation_records():
        sent = record["request"]["json_body"]
        if "prompt" in sent:
            [node_id] = record["body"]["node_errors"] or [_details_node(record["body"])]
            found.append((node_id, sent["prompt"]))
    return found


def _details_node(body: dict[str, Any]) -> str:
    """Prompt-level refusals name their node in `details` ("Node ID '#2'"), or none."""
    details = str(body["error"].get("details", ""))
    return details.split("#")[1].rstrip("'") if "#" in details else "prompt"


async def test_every_captured_validation_error_is_refused_before_any_reserve(
    pool: asyncpg.Pool, settings: Settings, projector: Any
) -> None:
    user_id = await funded_user(pool, 10)
    user = await bearer(pool, "user", user_id)
    recorded = _recorded_prompts()
    assert len(recorded) == 10  # every captured refusal that carries a prompt
    comfy = ComfyServer()
    async with comfy, client_for(settings_with_backends(settings, [comfy.url]), pool) as http:
        async with pool.acquire() as conn:
            before = await snapshot(conn)
        for node_id, prompt in recorded:
            answer = await http.post(
                "/jobs", json={"type": "IMAGE_TASK", "workflow": prompt}, headers=user
            )
            assert answer.status_code == 422, (prompt, answer.text)
            body = answer.json()
            assert body["error"] == "invalid_workflow"
            if body["node_errors"]:
                assert list(body["node_errors"]) == [node_id], body
                assert all(e["message"] for e in body["node_errors"][node_id])
            else:  # no class_type: refused by the shape check, which names the node
                assert f"node {node_id!r}" in body["detail"], body
        async with pool.acquire() as conn:
            assert await snapshot(conn) == before
        assert comfy.arrivals == [] and sum(comfy.posts.values()) == 0
        # The field is named too: the recorded details say which one.
        bad_min = captures.record("validation_errors/value_below_min.json")
        answer = await http.post(
            "/jobs",
            json={"type": "IMAGE_TASK", "workflow": bad_min["request"]["json_body"]["prompt"]},
            headers=user,
        )
        assert answer.json()["node_errors"]["1"][0]["field"] == "width"


async def test_the_check_follows_model_changes_and_falls_back_to_the_last_description(
    pool: asyncpg.Pool, settings: Settings, projector: Any
) -> None:
    """The sample template needs a checkpoint: refused while the backend has none,
    accepted once a model install is recorded (the cache refreshes at once), and still
    checked against the last description when the backend is down."""
    first = await publish_samples(pool)
    again = await publish_samples(pool)  # once only: the keys give the first answers back
    assert all(isinstance(d, Done) for d in first)
    assert all(isinstance(d, Done) and d.replayed for d in again)
    await wait_for(pool, first[-1].checkpoint, ["templates"], 5.0)  # type: ignore[union-attr]
    user_id = await funded_user(pool, 50)
    user = await bearer(pool, "user", user_id)
    ask = {"template": TEXT_TO_IMAGE_ID, "inputs": {"prompt": "a lighthouse at dusk"}}
    comfy = ComfyServer()
    await comfy.start()
    try:
        async with client_for(settings_with_backends(settings, [comfy.url]), pool) as http:
            listed = (await http.get("/templates", headers=user)).json()["items"]
            shown = {t["name"]: t["estimate_rcc"] for t in listed}
            assert shown == {"Text to image": 1, "Image to image": 2}
            refused = await http.post("/jobs", json=ask, headers=user)
            assert refused.status_code == 422, refused.text
            [problem] = refused.json()["node_errors"]["1"]
            assert problem["field"] == "ckpt_name" and "unknown model file" in problem["message"]

            comfy.checkpoints.append("v1-5-pruned-emaonly.safetensors")
            cached = await http.post("/jobs", json=ask, headers=user)
            assert cached.status_code == 422  # the cached description still has no model
            await _record_model_install(pool, "v1-5-pruned-emaonly.safetensors")
            big = {**ask, "inputs": {**ask["inputs"], "width": 1024, "height": 1024, "steps": 50}}
            accepted = await http.post("/jobs", json=big, headers=user)
            assert accepted.status_code == 201, accepted.text
            assert accepted.headers["x-workflow-check"] == "live"
            assert accepted.json()["cost_rcc"] == 6  # 1.048576 MP x 50 steps x 0.1, up

        await comfy.stop()
        # A new portal process: nothing cached, no backend answering — the description
        # kept in the database is used, and the answers say so.
        async with client_for(settings_with_backends(settings, [comfy.url]), pool) as http:
            offline = await http.post(
                "/jobs", json={**ask, "inputs": {"prompt": "y", "steps": 0}}, headers=user
            )
            assert offline.status_code == 422 and "steps" in offline.json()["inputs"]
            wrong = await http.post(
                "/jobs",
                json={"type": "IMAGE_TASK", "workflow": {"1": {"class_type": "NoSuchNode"}}},
                headers=user,
            )
            assert wrong.status_code == 422
            assert wrong.json()["checked_against"] == "last_known"
            fine = await http.post("/jobs", json=ask, headers=user)
            assert fine.status_code == 201, fine.text
            assert fine.headers["x-workflow-check"].startswith("last_known 20")
    finally:
        await comfy.stop()
    async with pool.acquire() as conn:
        assert await balance_of(conn, user_id) == 50 - 6 - 1


async def _record_model_install(pool: asyncpg.Pool, name: str) -> None:
    for command in (
        oc.RequestModelInstall(name=name, kind="checkpoints", install_id="i1", source="https://x"),
        oc.FinishModelInstall(name=name, install_id="i1", size_bytes=1, sha256="0" * 64),
    ):
        done = await execute(pool, command)
        assert not hasattr(done, "detail"), done
    async with pool.acquire() as conn:  # the models read model has it (the cache's mark)
        for _ in range(200):
            if await conn.fetchval("SELECT count(*) FROM models WHERE status = 'installed'"):
                return
            await asyncio.sleep(0.05)
    raise AssertionError("the model install was not projected")


async def test_raw_workflows_follow_the_setting_and_admins_always_may(
    pool: asyncpg.Pool, settings: Settings, projector: Any
) -> None:
    user = await bearer(pool, "user", await funded_user(pool, 10))
    admin = await bearer(pool, "admin", await funded_user(pool, 0, admin=True))
    raw = {"type": "IMAGE_TASK", "workflow": captures.run_prompt("run_success")}
    strict = settings_with_backends(settings, [], RCC_RAW_WORKFLOWS="admins")
    async with client_for(strict, pool) as http:
        refused = await http.post("/jobs", json=raw, headers=user)
        assert refused.status_code == 403 and refused.json()["error"] == "raw_workflows_not_allowed"
        allowed = await http.post("/jobs", json=raw, headers=admin)
        assert allowed.status_code == 201, allowed.text
        assert allowed.headers["x-workflow-check"] == "unchecked"  # no backend described yet
    async with client_for(settings, pool) as http:  # the default keeps version 1's behaviour
        assert (await http.post("/jobs", json=raw, headers=user)).status_code == 201
