"""One job view everywhere: POST /jobs, GET /jobs, GET /jobs/{id} and GET /admin/jobs show
the same fields with the same values for the same job (src/portal/job_views.py)."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import msgspec

from projections.views import JobView
from tests.portal_helpers import IMAGE_JOB, bearer, grant, sign_up

NOT_RUNNING = "the ComfyUI adapter is not running"


async def _four_views(
    client: httpx.AsyncClient, pool: asyncpg.Pool, headers: dict[str, str]
) -> list[dict[str, Any]]:
    created = await client.post("/jobs", json=IMAGE_JOB, headers=headers)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    listed = (await client.get("/jobs", headers=headers)).json()["items"]
    single = (await client.get(f"/jobs/{job_id}", headers=headers)).json()
    admin = await bearer(pool, "admin")
    everyone = (await client.get("/admin/jobs", headers=admin)).json()["items"]
    return [
        created.json(),
        next(job for job in listed if job["id"] == job_id),
        single,
        next(job for job in everyone if job["id"] == job_id),
    ]


def _assert_same(views: list[dict[str, Any]]) -> None:
    first = views[0]
    assert set(first) == set(JobView.__struct_fields__)
    for view in views[1:]:
        for field in JobView.__struct_fields__:
            assert view[field] == first[field], (field, view[field], first[field])


async def test_a_members_job_looks_the_same_in_every_view(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 10)
    views = await _four_views(client, pool, member.headers)
    _assert_same(views)
    assert views[0]["bypass"] is False and views[0]["metadata"] == {}
    assert views[0]["waiting_reason"].startswith(NOT_RUNNING)  # no adapter in this test


async def test_an_admins_bypass_job_looks_the_same_in_every_view(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)
    promoted = await client.patch(
        f"/admin/users/{member.user_id}",
        json={"is_admin": True},
        headers=await bearer(pool, "admin"),
    )
    assert promoted.status_code == 200, promoted.text
    views = await _four_views(client, pool, member.headers)
    _assert_same(views)
    # Once said as metadata {"bypass": true} next to a top-level false.
    assert views[0]["bypass"] is True and views[0]["metadata"] == {}
    assert views[0]["cost_rcc"] == 1


def test_the_view_has_one_struct() -> None:
    decoded = msgspec.json.decode(
        msgspec.json.encode({"id": "j", "user_id": "u", "type": "IMAGE_TASK", "cost_rcc": 1,
                             "status": "created", "duration_ms": None, "output_uris": [],
                             "error": None, "metadata": {}, "created_at": "2026-01-01T00:00:00Z",
                             "started_at": None, "ended_at": None}),
        type=JobView,
    )  # fmt: skip
    assert decoded.waiting_reason is None and decoded.bypass is False
