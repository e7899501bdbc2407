"""The JSON API end to end over ASGI: jobs, credits, isolation between users, bad input."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import asyncpg
import httpx

from tests.conftest import portal_client
from tests.portal_helpers import IMAGE_JOB, bearer, grant, sign_up

VIDEO_JOB = {**IMAGE_JOB, "type": "VIDEO_TASK"}


async def test_job_reserve_read_your_writes_and_402(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 6)
    created = await client.post("/jobs", json=VIDEO_JOB, headers=member.headers)
    assert created.status_code == 201
    job = created.json()
    assert (job["type"], job["cost_rcc"], job["status"]) == ("VIDEO_TASK", 5, "created")
    # Right after the command: the same user's reads show it.
    assert (await client.get("/me")).json()["balance_rcc"] == 1
    assert [j["id"] for j in (await client.get("/jobs")).json()["items"]] == [job["id"]]
    assert (await client.get(f"/jobs/{job['id']}")).json()["status"] == "created"
    reasons = [e["reason"] for e in (await client.get("/ledger")).json()["items"]]
    assert reasons == ["JOB_RESERVE", "TOPUP_GRANT"]

    short = await client.post("/jobs", json=VIDEO_JOB, headers=member.headers)
    assert short.status_code == 402
    assert short.json() == {
        "error": "insufficient_credits",
        "detail": "this needs 5 RCC and the balance is 1 RCC",
        "balance_rcc": 1,
        "cost_rcc": 5,
    }
    assert len((await client.get("/jobs")).json()["items"]) == 1, "nothing was created"
    ops = await bearer(pool, "service")
    metrics = (await client.get("/metrics", headers=ops)).text.splitlines()
    assert 'rcc_jobs{status="created"} 1.0' in metrics
    assert 'rcc_credits{kind="granted"} 6.0' in metrics
    assert 'rcc_credits{kind="consumed"} 5.0' in metrics


async def test_cancel_releases_the_reserve_and_shows_in_the_ledger(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 5)
    job = (await client.post("/jobs", json=VIDEO_JOB, headers=member.headers)).json()
    cancelled = await client.post(f"/jobs/{job['id']}/cancel", headers=member.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert (await client.get("/me")).json()["balance_rcc"] == 5
    again = await client.post(f"/jobs/{job['id']}/cancel", headers=member.headers)
    assert again.status_code == 409 and again.json()["error"] == "illegal_transition"
    ledger = (await client.get("/ledger", params={"reason": "JOB_RELEASE"})).json()["items"]
    assert [(e["delta"], e["job_id"]) for e in ledger] == [(5, job["id"])]


async def test_idempotency_key_header(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 10)
    headers = {**member.headers, "Idempotency-Key": "order-1"}
    answers = await asyncio.gather(
        *(client.post("/jobs", json=IMAGE_JOB, headers=headers) for _ in range(5))
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 4
    assert (await client.get("/me")).json()["balance_rcc"] == 9
    other = await client.post("/jobs", json=VIDEO_JOB, headers=headers)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"


async def test_queued_jobs_limit_is_429(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    """Twenty jobs queue (the running limit applies at dispatch); the 21st is a 429."""
    member = await sign_up(client)
    await grant(pool, member.user_id, 30)
    for _ in range(20):
        assert (
            await client.post("/jobs", json=IMAGE_JOB, headers=member.headers)
        ).status_code == 201
    refused = await client.post("/jobs", json=IMAGE_JOB, headers=member.headers)
    assert refused.status_code == 429 and refused.json()["error"] == "too_many_jobs"
    assert int(refused.headers["retry-after"]) > 0
    assert (await client.get("/me")).json()["balance_rcc"] == 10


async def test_one_user_never_sees_or_changes_anothers_things(
    portal_app: Any, pool: asyncpg.Pool
) -> None:
    async with portal_client(portal_app) as alice_http, portal_client(portal_app) as bob_http:
        alice = await sign_up(alice_http)
        bob = await sign_up(bob_http)
        await grant(pool, alice.user_id, 5)
        job = (await alice_http.post("/jobs", json=IMAGE_JOB, headers=alice.headers)).json()
        assert (await bob_http.get(f"/jobs/{job['id']}")).status_code == 404
        cancel = await bob_http.post(f"/jobs/{job['id']}/cancel", headers=bob.headers)
        assert cancel.status_code == 404
        assert (await bob_http.get("/jobs")).json()["items"] == []
        assert (await bob_http.get("/ledger")).json()["items"] == []
        assert (await bob_http.get("/ledger", params={"job_id": job["id"]})).json()["items"] == []
        assert (await bob_http.get("/me")).json()["id"] == bob.user_id
        # Bob's CSRF token is no good with Alice's session either.
        assert (
            await alice_http.post("/jobs", json=IMAGE_JOB, headers=bob.headers)
        ).status_code == 403
        assert (await alice_http.get(f"/jobs/{job['id']}")).json()["status"] == "created"


async def test_bad_input_is_a_clear_4xx_naming_the_problem(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)
    await grant(pool, member.user_id, 50)
    h = {**member.headers, "content-type": "application/json"}

    async def post(body: bytes) -> httpx.Response:
        return await client.post("/jobs", content=body, headers=h)

    malformed = await post(b'{"type": "IMAGE_TASK", ')
    assert malformed.status_code == 400 and malformed.json()["error"] == "invalid_request"
    unknown = await post(json.dumps({**IMAGE_JOB, "priority": 9}).encode())
    assert unknown.status_code == 400 and "priority" in unknown.json()["detail"]
    wrong_type = await post(json.dumps({**IMAGE_JOB, "type": "AUDIO_TASK"}).encode())
    assert wrong_type.status_code == 400 and "type" in wrong_type.json()["detail"]
    no_workflow = await post(json.dumps({"type": "IMAGE_TASK"}).encode())
    assert no_workflow.status_code == 400 and "workflow" in no_workflow.json()["detail"]
    bad_shape = await post(json.dumps({"type": "IMAGE_TASK", "workflow": {"1": 5}}).encode())
    assert bad_shape.status_code == 422 and bad_shape.json()["error"] == "invalid_workflow"
    deep: Any = {}
    for _ in range(200):
        deep = {"x": deep}
    nested = await post(
        json.dumps(
            {"type": "IMAGE_TASK", "workflow": {"1": {"class_type": "A", "inputs": deep}}}
        ).encode()
    )
    assert nested.status_code in (400, 422) and nested.json()["error"] in (
        "invalid_workflow",
        "invalid_request",
    )
    huge = await post(
        json.dumps(
            {
                "type": "IMAGE_TASK",
                "workflow": {"1": {"class_type": "A", "inputs": {"s": "x" * 2_000_000}}},
            }
        ).encode()
    )
    assert huge.status_code == 413 and huge.json()["error"] == "payload_too_large"
    bad_cursor = await client.get("/jobs", params={"cursor": "???"})
    assert bad_cursor.status_code == 400
    bad_limit = await client.get("/jobs", params={"limit": "0"})
    assert bad_limit.status_code == 400
    assert (await client.get("/me")).json()["balance_rcc"] == 50, "no refusal charged anything"


async def test_every_admin_route_is_guarded(portal_app: Any, pool: asyncpg.Pool) -> None:
    """Walks the app's route table: a new /admin route cannot forget its guard."""
    admin_routes = [
        (method, route.path)
        for route in portal_app.routes
        if route.path.startswith("/admin")
        for method in sorted(getattr(route, "methods", set()) - {"HEAD", "OPTIONS"})
    ]
    assert len(admin_routes) >= 8
    user = await bearer(pool, "user", None)
    async with portal_client(portal_app) as http:
        plain = await sign_up(http)
        for method, path in admin_routes:
            url = path.replace("{user_id:str}", plain.user_id)
            url = re.sub(r"\{[a-z_]+:int\}", "1", url)  # an int parameter must parse to route
            anonymous = await portal_client(portal_app).request(method, url, json={})
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            as_user = await http.request(
                method, url, json={"is_admin": True}, headers=plain.headers
            )
            assert as_user.status_code == 403, (method, path, as_user.text)
            with_token = await portal_client(portal_app).request(method, url, json={}, headers=user)
            assert with_token.status_code == 403, (method, path)
        assert (await http.get("/me")).json()["is_admin"] is False


async def test_admin_adjusts_and_grants_admin_service_token_only_reads(
    client: httpx.AsyncClient, portal_app: Any, pool: asyncpg.Pool
) -> None:
    member = await sign_up(client)
    admin = await bearer(pool, "admin")
    service = await bearer(pool, "service")
    async with portal_client(portal_app) as ops:
        url = f"/admin/users/{member.user_id}"
        no_reason = await ops.patch(url, json={"rcc_delta": 5}, headers=admin)
        assert no_reason.status_code == 422 and no_reason.json()["error"] == "reason_required"
        done = await ops.patch(url, json={"rcc_delta": 5, "reason": "goodwill"}, headers=admin)
        assert done.status_code == 200 and done.json()["balance_rcc"] == 5
        below = await ops.patch(url, json={"rcc_delta": -6, "reason": "oops"}, headers=admin)
        assert below.status_code == 422
        assert (await ops.patch(url, json={"is_admin": True}, headers=admin)).json()[
            "is_admin"
        ] is True
        refused = await ops.patch(url, json={"rcc_delta": 1, "reason": "x"}, headers=service)
        assert refused.status_code == 403
        listed = (
            await ops.get("/admin/users", params={"email": member.email[:6]}, headers=service)
        ).json()
        assert [u["id"] for u in listed["items"]] == [member.user_id]
        ghost = await ops.patch(
            "/admin/users/nobody", json={"rcc_delta": 1, "reason": "x"}, headers=admin
        )
        assert ghost.status_code == 404
        logs = (await ops.get("/admin/logs", headers=admin)).json()["items"]
        assert any(entry["action"] for entry in logs)
        csv_text = (await ops.get("/admin/logs.csv", headers=admin)).text
        assert csv_text.splitlines()[0] == "id,at,user_id,actor,ip,action,status,detail"
        events = (
            await ops.get(
                "/admin/events", params={"stream": f"wallet-{member.user_id}"}, headers=service
            )
        ).json()
        assert [e["type"] for e in events["items"]] == ["wallet_opened", "credits_adjusted"]
        dashboard = await ops.get("/admin/dashboard", headers=service)
        assert dashboard.status_code == 200
    me = (await client.get("/me")).json()
    assert me["balance_rcc"] == 5 and me["is_admin"] is True


async def test_schema_health_and_metrics(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert "/jobs" in schema["paths"] and "/admin/users/{user_id}" in schema["paths"]
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = (await client.get("/metrics", headers=await bearer(pool, "admin"))).text
    assert "rcc_requests_total" in metrics
    assert 'rcc_projection_lag_events{projection="balances"}' in metrics
    assert 'rcc_credits{kind="granted"}' in metrics
    assert (await client.get("/healthz")).headers["x-request-id"]
