"""Lots over HTTP: the admin grants with an expiry, GET /credits/lots and /me show them,
and the ledger shows the expiry written by the scheduler."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from rcc.service.expiry_scheduler import ExpiryScheduler
from tests.portal_helpers import bearer, grant, sign_up
from tests.projection_helpers import drain


async def test_an_admin_grant_with_expiry_is_listed_spent_first_and_expires(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    await grant(pool, member.user_id, 10)  # a top-up: 12 months
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    body = {"rcc_delta": 4, "reason": "promo", "expires_at": expires.isoformat()}
    answer = await client.patch(f"/admin/users/{member.user_id}", json=body, headers=admin)
    assert answer.status_code == 200, answer.text

    lots = (await client.get("/credits/lots")).json()
    assert [(i["source"], i["remaining_rcc"]) for i in lots["items"]] == [
        ("manual", 4),
        ("topup", 10),
    ]  # the promo expires first, so it is spent first
    assert lots["items"][0]["expires_at"].startswith(expires.strftime("%Y-%m-%dT%H:%M:%S"))
    me = (await client.get("/me")).json()
    assert (me["balance_rcc"], me["available_rcc"], me["held_rcc"]) == (14, 14, 0)
    assert me["next_expiry"]["amount_rcc"] == 4

    await asyncio.sleep((expires - datetime.now(UTC)).total_seconds() + 0.05)
    # Past the instant the promo no longer counts, even before the scheduler ran.
    assert (await client.get("/me")).json()["balance_rcc"] == 10
    assert [i["source"] for i in (await client.get("/credits/lots")).json()["items"]] == ["topup"]
    expired = await ExpiryScheduler(pool).tick()
    assert [(e.lot, e.expired_rcc) for e in expired] == [("L2", 4)]
    assert await ExpiryScheduler(pool).tick() == []  # once

    await drain(pool)
    ledger = (await client.get("/ledger", params={"reason": "CREDITS_EXPIRED"})).json()
    assert [(row["delta"], row["note"]) for row in ledger["items"]] == [(-4, "lot L2 expired")]

    # An auditor's time travel: what could be spent just before and just after the instant.
    auditor = await bearer(pool, "auditor")
    for at, spendable in ((expires - timedelta(seconds=0.2), 14), (expires, 10)):
        answer = await client.get(
            f"/audit/wallets/user:{member.user_id}",
            params={"as_of": at.isoformat()},
            headers=auditor,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["available_rcc"] == spendable, (at, answer.json())


async def test_expires_at_needs_a_positive_delta_and_a_future_time(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    await grant(pool, member.user_id, 5)
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    for body in (
        {"rcc_delta": -1, "reason": "x", "expires_at": future},
        {"rcc_delta": 3, "reason": "x", "expires_at": past},
        {"is_admin": False, "expires_at": future},
        {"rcc_delta": 3, "reason": "x", "expires_at": "2030-01-01T00:00:00"},
    ):
        answer = await client.patch(f"/admin/users/{member.user_id}", json=body, headers=admin)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.json()["error"] and answer.json()["detail"]
    assert (await client.get("/me")).json()["balance_rcc"] == 5
