"""PATCH /admin/users/{id}: the adjustment and the admin flag in one transaction, and an
Idempotency-Key that makes a retry adjust once."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx

from tests.helpers import balance_of, snapshot
from tests.portal_helpers import bearer, sign_up


async def _wallet_and_user_events(owner: asyncpg.Connection, user_id: str) -> list[Any]:
    return list(
        await owner.fetch(
            """SELECT stream_id, type, tx_id::text AS tx FROM events
                WHERE stream_id IN ($1, $2) ORDER BY position""",
            f"wallet-{user_id}",
            f"user-{user_id}",
        )
    )


async def test_adjustment_and_admin_flag_commit_in_one_transaction(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    body = {"rcc_delta": 7, "reason": "goodwill", "is_admin": True}
    answer = await client.patch(f"/admin/users/{member.user_id}", json=body, headers=admin)
    assert answer.status_code == 200, answer.text
    assert answer.json()["balance_rcc"] == 7 and answer.json()["is_admin"] is True
    written = await _wallet_and_user_events(owner, member.user_id)
    changes = [r for r in written if r["type"] in {"credits_adjusted", "admin_status_changed"}]
    assert [r["type"] for r in changes] == ["credits_adjusted", "admin_status_changed"]
    assert changes[0]["tx"] == changes[1]["tx"], "both halves must share one transaction"


async def test_a_refused_adjustment_keeps_the_admin_flag_unchanged(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    before = await snapshot(owner)
    body = {"rcc_delta": -1, "reason": "below zero", "is_admin": True}
    answer = await client.patch(f"/admin/users/{member.user_id}", json=body, headers=admin)
    assert answer.status_code == 422 and answer.json()["error"] == "invalid"
    assert await snapshot(owner) == before
    assert (await client.get("/me")).json()["is_admin"] is False


async def test_a_failing_second_half_leaves_the_first_uncommitted(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    # A real failure inside PostgreSQL while the admin flag's event is written, after
    # the adjustment was staged: with two transactions the adjustment would stay.
    await owner.execute(
        """CREATE FUNCTION test_refuse_admin_change() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF NEW.type = 'admin_status_changed' THEN
                   RAISE EXCEPTION 'injected failure';
               END IF;
               RETURN NEW;
           END $$;
           CREATE TRIGGER test_refuse_admin_change BEFORE INSERT ON events
               FOR EACH ROW EXECUTE FUNCTION test_refuse_admin_change();"""
    )
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    before = await snapshot(owner)
    body = {"rcc_delta": 9, "reason": "goodwill", "is_admin": True}
    answer = await client.patch(f"/admin/users/{member.user_id}", json=body, headers=admin)
    assert answer.status_code == 500 and answer.json()["error"] == "internal_error"
    assert await snapshot(owner) == before
    assert await balance_of(owner, member.user_id) == 0


async def test_a_retried_key_adjusts_once_and_replays_the_answer(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    url = f"/admin/users/{member.user_id}"
    body = {"rcc_delta": 5, "reason": "goodwill", "is_admin": True}
    keyed = {**admin, "Idempotency-Key": "adjust-1"}
    first = await client.patch(url, json=body, headers=keyed)
    again = await client.patch(url, json=body, headers=keyed)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.json()["balance_rcc"] == again.json()["balance_rcc"] == 5
    # Eight retries arriving at once under a second key: still one adjustment.
    burst = {**admin, "Idempotency-Key": "adjust-2"}
    answers = await asyncio.gather(
        *(
            client.patch(url, json={"rcc_delta": 3, "reason": "burst"}, headers=burst)
            for _ in range(8)
        )
    )
    assert [a.status_code for a in answers] == [200] * 8
    assert await balance_of(owner, member.user_id) == 8
    adjusted = await owner.fetchval(
        "SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'credits_adjusted'",
        f"wallet-{member.user_id}",
    )
    assert adjusted == 2
    other = await client.patch(url, json={"rcc_delta": 4, "reason": "x"}, headers=keyed)
    assert other.status_code == 409 and other.json()["error"] == "idempotency_key_reused"
    assert await balance_of(owner, member.user_id) == 8
