"""Blocking reaches every way of spending: an organisation a platform admin blocked
charges nothing (jobs of its members, a service's hold or usage on its wallet), a
blocked user's wallet takes no service hold either, and unblocking restores both.
Service holds name organisation wallets as `org:<id>`; `user:<org id>` names none."""

from __future__ import annotations

import asyncpg
import httpx

from rcc.audit import verify
from tests.org_helpers import join, new_org, person
from tests.portal_helpers import IMAGE_JOB, bearer

SCOPES = ("credits:read", "credits:hold", "credits:usage")


async def _block(
    http: httpx.AsyncClient, admin: dict[str, str], path: str, blocked: bool
) -> httpx.Response:
    body = {"blocked": blocked, "reason": "chargeback under review"}
    return await http.patch(path, json=body, headers=admin)


async def test_a_blocked_org_charges_nothing_until_unblocked(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    admin = await bearer(pool, "admin")
    service = await bearer(pool, "service", name="render-farm", scopes=SCOPES)
    org = await new_org(client, pool, credits=20)
    member = await join(client, pool, org, "member")
    job = {**IMAGE_JOB, "wallet": org.wallet}
    hold = {"wallet": org.wallet, "amount_rcc": 3, "reason": "upscale", "timeout_s": 60}

    # Before: a member's job and a service's hold both charge the org.
    assert (await client.post("/jobs", json=job, headers=member.headers)).status_code == 201
    held = await client.post("/holds", json=hold, headers=service)
    assert held.status_code == 201, held.text
    assert held.json()["wallet"] == org.wallet

    blocked = await _block(client, admin, f"/admin/orgs/{org.id}", True)
    assert blocked.status_code == 200, blocked.text
    refused_job = await client.post("/jobs", json=job, headers=member.headers)
    assert refused_job.status_code == 403, refused_job.text
    assert refused_job.json()["error"] == "account_blocked"
    assert refused_job.json()["reason"] == "chargeback under review"
    for path, body in (("/holds", hold), ("/usage", {**hold, "amount_rcc": 1})):
        body = {k: v for k, v in body.items() if path == "/holds" or k != "timeout_s"}
        refused = await client.post(path, json=body, headers=service)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"] == "account_blocked"
    # Reading goes on, and the hold taken before the block can still be settled.
    wallet = await client.get(f"/credits/wallets/{org.wallet}", headers=service)
    assert wallet.status_code == 200 and wallet.json()["balance_rcc"] == 20 - 1 - 3
    voided = await client.post(f"/holds/{held.json()['id']}/void", headers=service)
    assert voided.status_code == 200, voided.text

    # A blocked org's patch carries nothing else; unblocking restores spending.
    mixed = {"blocked": False, "reason": "x", "rcc_delta": 5}
    assert (
        await client.patch(f"/admin/orgs/{org.id}", json=mixed, headers=admin)
    ).status_code == 422
    assert (await _block(client, admin, f"/admin/orgs/{org.id}", False)).status_code == 200
    assert (await client.post("/jobs", json=job, headers=member.headers)).status_code == 201
    report = await verify(owner)
    assert report.ok, report.problems


async def test_a_blocked_users_wallet_takes_no_service_hold_and_refs_name_their_kind(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    service = await bearer(pool, "service", name="render-farm", scopes=SCOPES)
    someone = await person(pool, balance=10)
    org = await new_org(client, pool, credits=5)
    hold = {"wallet": f"user:{someone.user_id}", "amount_rcc": 2, "reason": "x", "timeout_s": 60}

    blocked = await _block(client, admin, f"/admin/users/{someone.user_id}", True)
    assert blocked.status_code == 200, blocked.text
    refused = await client.post("/holds", json=hold, headers=service)
    assert (refused.status_code, refused.json()["error"]) == (403, "account_blocked")
    assert (
        await _block(client, admin, f"/admin/users/{someone.user_id}", False)
    ).status_code == 200
    assert (await client.post("/holds", json=hold, headers=service)).status_code == 201

    # An org's wallet is `org:<id>`; the same id as a user reference names no wallet.
    wrong = {**hold, "wallet": f"user:{org.id}"}
    assert (await client.post("/holds", json=wrong, headers=service)).status_code == 404
    read = await client.get(f"/credits/wallets/user:{org.id}", headers=service)
    assert read.status_code == 404
    read = await client.get(f"/credits/wallets/{org.wallet}", headers=service)
    assert read.status_code == 200 and read.json()["balance_rcc"] == 5
