"""The GPU pool's admin API: add, list, change, drain, remove, with validation errors,
role checks, Idempotency-Key, the events with their actor, and a replay that rebuilds
the same list."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from comfy_adapter.config import parse_urls
from projections.backends import PROJECTION
from rcc.projector.replay import replay
from rcc.service.backend_pool import usable_backends
from tests.portal_helpers import bearer, sign_up
from tests.projection_helpers import drain


async def test_round_trip_with_events_actor_and_usable_list(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    admin = await bearer(pool, "admin")
    body = {"url": "http://gpu-1.internal:8188/", "slots": 3, "tags": ["Video", "48gb"]}
    key = {**admin, "idempotency-key": "add-gpu-1"}
    added = await client.post("/admin/backends", json=body, headers=key)
    assert added.status_code == 201, added.text
    shown = added.json()
    assert (shown["url"], shown["slots"], shown["tags"], shown["draining"]) == (
        "http://gpu-1.internal:8188",
        3,
        ["48gb", "video"],
        False,
    )
    assert shown["health"] == "unknown"  # no adapter has looked at it yet
    again = await client.post("/admin/backends", json=body, headers=key)
    assert again.status_code == 201 and again.json()["id"] == shown["id"]  # applied once
    twice = await client.post("/admin/backends", json=body, headers=admin)
    assert twice.status_code == 409 and twice.json()["error"] == "conflict"

    patch = {"slots": 1, "tags": ["video"], "draining": True}
    changed = await client.patch(f"/admin/backends/{shown['id']}", json=patch, headers=admin)
    assert changed.status_code == 200, changed.text
    assert (changed.json()["slots"], changed.json()["tags"], changed.json()["draining"]) == (
        1,
        ["video"],
        True,
    )
    async with pool.acquire() as conn:
        [usable] = await usable_backends(conn)
    assert (usable.url, usable.slots, usable.tags, usable.draining) == (
        "http://gpu-1.internal:8188",
        1,
        ("video",),
        True,
    )
    listed = (await client.get("/admin/backends", headers=admin)).json()
    assert [b["id"] for b in listed["items"]] == [shown["id"]] and listed["next_cursor"] is None

    removed = await client.delete(f"/admin/backends/{shown['id']}", headers=admin)
    assert removed.status_code == 204
    assert (await client.get("/admin/backends", headers=admin)).json()["items"] == []
    async with pool.acquire() as conn:
        assert await usable_backends(conn) == []
    events = await owner.fetch(
        "SELECT type, data->>'actor' AS actor FROM events WHERE stream_id = 'backend-pool'"
        " ORDER BY position"
    )
    assert [e["type"] for e in events] == [
        "backend_added",
        "backend_changed",
        "backend_drained",
        "backend_removed",
    ]
    assert {e["actor"] for e in events} == {"token:admin"}
    logged = (await client.get("/admin/logs", headers=admin)).json()["items"]
    actions = [e["action"] for e in logged if e["action"].startswith("backend.")]
    assert sorted(actions) == ["backend.add", "backend.change", "backend.drain", "backend.remove"]
    assert {e["actor"] for e in logged if e["action"].startswith("backend.")} == {"token:admin"}


async def test_replay_rebuilds_the_same_list(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    admin = await bearer(pool, "admin")
    ids = []
    for n in range(3):
        body = {"url": f"http://gpu-{n}:8188", "slots": n + 1, "tags": [f"t{n}"]}
        ids.append((await client.post("/admin/backends", json=body, headers=admin)).json()["id"])
    await client.patch(f"/admin/backends/{ids[0]}", json={"draining": True}, headers=admin)
    await client.patch(f"/admin/backends/{ids[1]}", json={"tags": ["video"]}, headers=admin)
    await client.delete(f"/admin/backends/{ids[2]}", headers=admin)
    await drain(pool)
    query = "SELECT id, url, slots, tags, draining, added_by, added_at FROM backends ORDER BY url"
    live = [tuple(r) for r in await owner.fetch(query)]
    await replay(owner, [PROJECTION])
    assert [tuple(r) for r in await owner.fetch(query)] == live
    assert [(r[1], r[3], r[4]) for r in live] == [
        ("http://gpu-0:8188", ["t0"], True),
        ("http://gpu-1:8188", ["video"], False),
    ]


async def test_validation_errors_are_clear_422s(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    refused = {
        "ftp://gpu:8188": "must start with http",
        "http://:8188": "has no host",
        "http://gpu-1": "must name its port",
        "http://user:pw@gpu:8188": "credentials",
        "http://gpu:99999": "not a URL",
    }
    for url, words in refused.items():
        answer = await client.post("/admin/backends", json={"url": url}, headers=admin)
        assert answer.status_code == 422, (url, answer.text)
        assert words in answer.json()["detail"], (url, answer.json())
    for slots in (0, 65):
        answer = await client.post(
            "/admin/backends", json={"url": "http://gpu:8188", "slots": slots}, headers=admin
        )
        assert answer.status_code == 400 and answer.json()["error"] == "invalid_request"
    bad_tag = await client.post(
        "/admin/backends", json={"url": "http://gpu:8188", "tags": ["no spaces"]}, headers=admin
    )
    assert bad_tag.status_code == 422 and "tags must match" in bad_tag.json()["detail"]
    unknown = await client.patch("/admin/backends/nope", json={"slots": 2}, headers=admin)
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    empty = await client.patch("/admin/backends/nope", json={}, headers=admin)
    assert empty.status_code == 422 and empty.json()["error"] == "nothing_to_change"
    extra = await client.post(
        "/admin/backends", json={"url": "http://gpu:8188", "colour": "red"}, headers=admin
    )
    assert extra.status_code == 400
    assert (await client.get("/admin/backends", headers=admin)).json()["items"] == []


async def test_only_admins_reach_the_pool(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    service = await bearer(pool, "service")
    member = await sign_up(client)
    body = {"url": "http://gpu:8188"}
    for headers in (service, member.headers):
        for answer in (
            await client.get("/admin/backends", headers=headers),
            await client.post("/admin/backends", json=body, headers=headers),
            await client.patch("/admin/backends/x", json={"slots": 2}, headers=headers),
            await client.delete("/admin/backends/x", headers=headers),
        ):
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"] == "forbidden"
    client.cookies.clear()
    assert (await client.get("/admin/backends")).status_code == 401


def test_comfyui_urls_that_the_pool_would_refuse_stop_the_adapter_at_start() -> None:
    assert parse_urls(" http://a:8188/ , http://a:8188,https://b:443") == (
        "http://a:8188",
        "https://b:443",
    )
    for bad, words in (("http://gpu", "must name its port"), ("gpu:8188", "http")):
        with pytest.raises(SystemExit, match=words):
            parse_urls(bad)
