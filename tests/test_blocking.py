"""Blocking an account (docs/POLICIES.md): jobs and checkouts refused with 403
`account_blocked`, sign-in and reading still work, running jobs finish, and the block
is an audited event with its actor and reason."""

from __future__ import annotations

import asyncpg
import httpx

from rcc.audit import verify
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.helpers import snapshot
from tests.portal_helpers import IMAGE_JOB, PASSWORD, bearer, grant, sign_up


async def test_a_blocked_account_signs_in_but_cannot_spend_and_its_job_finishes(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    await grant(pool, member.user_id, 50)
    running = await client.post("/jobs", json=IMAGE_JOB, headers=member.headers)
    assert running.status_code == 201
    job_id = running.json()["id"]
    assert isinstance(await execute(pool, c.MarkJob(job_id=job_id, status="running")), Done)

    path = f"/admin/users/{member.user_id}"
    unexplained = await client.patch(path, json={"blocked": True}, headers=admin)
    assert unexplained.status_code == 422 and unexplained.json()["error"] == "reason_required"
    blocked = await client.patch(
        path, json={"blocked": True, "reason": "chargebacks"}, headers=admin
    )
    assert blocked.status_code == 200, blocked.text
    assert blocked.json() == {"user_id": member.user_id, "blocked": True, "reason": "chargebacks"}
    event = await owner.fetchrow(
        """SELECT data, metadata FROM events
            WHERE stream_id = $1 AND type = 'account_block_changed'""",
        f"user-{member.user_id}",
    )
    assert event["data"]["actor"].startswith("token:") and event["data"]["reason"] == "chargebacks"
    assert event["metadata"]["actor"] == event["data"]["actor"]

    await client.post("/auth/logout", headers=member.headers)
    login = await client.post("/auth/login", json={"email": member.email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    headers = {"x-csrf-token": login.json()["csrf_token"]}
    me = (await client.get("/me")).json()
    assert me["blocked"] is True and me["blocked_reason"] == "chargebacks"

    before = await snapshot(owner)
    job = await client.post("/jobs", json=IMAGE_JOB, headers=headers)
    assert job.status_code == 403
    assert job.json()["error"] == "account_blocked" and job.json()["reason"] == "chargebacks"
    for path_, body in [
        ("/checkout/topup", {"pack": "S"}),
        ("/checkout/subscription", {"plan": "pro", "interval": "month"}),
    ]:
        checkout = await client.post(path_, json=body, headers=headers)
        assert checkout.status_code == 403 and checkout.json()["error"] == "account_blocked"
    assert await snapshot(owner) == before
    assert (await client.get("/jobs")).status_code == 200  # reading goes on

    done = await execute(pool, c.MarkJob(job_id=job_id, status="succeeded"))
    assert isinstance(done, Done)  # the job that was running finishes

    unblock = {"blocked": False, "reason": "resolved"}
    assert (await client.patch(path, json=unblock, headers=admin)).status_code == 200
    assert (await client.post("/jobs", json=IMAGE_JOB, headers=headers)).status_code == 201
    assert (await client.get("/me")).json()["blocked"] is False
    assert (await verify(owner)).ok
