"""Policies as scoped, audited configuration (docs/POLICIES.md), on real PostgreSQL:
bounds, scope precedence, a future effective_at, history as of a past instant, the log
reproducing every resolved value, and a plan's price change reaching only its new jobs."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from rcc.domain.events import PolicySet, decode_event
from rcc.policy import current_book, resolve
from rcc.policy.store import load_book
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.policy_commands import SetPolicy
from tests import stripe_payloads as sp
from tests.helpers import funded_user, snapshot
from tests.payment_helpers import STARTER, caught_up, delivered, with_stripe
from tests.portal_helpers import IMAGE_JOB, bearer, grant, sign_up


async def _put(
    http: httpx.AsyncClient, admin: dict[str, str], key: str, **body: Any
) -> httpx.Response:
    body.setdefault("reason", "test")
    return await http.put(f"/admin/policies/{key}", json=body, headers=admin)


async def _cost_of_new_job(http: httpx.AsyncClient, headers: dict[str, str]) -> int:
    answer = await http.post("/jobs", json=IMAGE_JOB, headers=headers)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["cost_rcc"])


async def test_out_of_bounds_values_are_refused_and_write_nothing(
    client: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    before = await snapshot(owner)
    for key, body in [
        ("price.IMAGE_TASK", {"scope": "global", "value": -1}),
        ("limits.daily_rcc", {"scope": "global", "value": 10**9}),
        ("jobs.max_running", {"scope": "global", "value": None}),  # not nullable
        ("webhooks.retry_schedule_s", {"scope": "global", "value": [5, 0]}),
        ("price.VIDEO_TASK", {"scope": "plan", "value": 3}),  # a plan scope needs its id
        ("price.VIDEO_TASK", {"scope": "global", "value": 3, "reason": " "}),
    ]:
        answer = await _put(client, admin, key, **body)
        assert answer.status_code == 422, (key, answer.text)
        assert answer.json()["error"] == "invalid" and answer.json()["detail"]
    bounds = (await _put(client, admin, "price.IMAGE_TASK", scope="global", value=-1)).json()
    assert "between 1 and 100000" in bounds["detail"]
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    late = await _put(client, admin, "price.IMAGE_TASK", scope="global", value=2, effective_at=past)
    assert late.status_code == 422 and "past" in late.json()["detail"]
    unknown = await _put(client, admin, "price.NOPE", scope="global", value=1)
    assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_policy"
    refused = await _put(client, member.headers, "price.IMAGE_TASK", scope="global", value=2)
    assert refused.status_code == 403
    assert await snapshot(owner) == before


async def test_the_narrowest_scope_in_effect_wins_for_new_jobs(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    alice, bob = await sign_up(client), await sign_up(client)
    for who in (alice, bob):
        await grant(pool, who.user_id, 100)
    alice_h = await bearer(pool, "user", alice.user_id)
    bob_h = await bearer(pool, "user", bob.user_id)
    # Unfinished jobs per account are a policy too (the environment's 20 until set).
    assert (await _put(client, admin, "jobs.max_queued", scope="global", value=50)).is_success
    assert await _cost_of_new_job(client, alice_h) == 1  # the built-in default
    steps = [
        ({"scope": "global", "value": 3}, 3, 3),
        ({"scope": "plan", "scope_id": "free", "value": 4}, 4, 4),
        ({"scope": "user", "scope_id": alice.user_id, "value": 7}, 7, 4),
        ({"scope": "global", "value": 2}, 7, 4),  # wider scopes no longer matter
    ]
    for body, alice_cost, bob_cost in steps:
        answer = await _put(client, admin, "price.IMAGE_TASK", **body)
        assert answer.status_code == 200, answer.text
        assert await _cost_of_new_job(client, alice_h) == alice_cost
        assert await _cost_of_new_job(client, bob_h) == bob_cost
    history = await client.get(
        "/admin/policies/price.IMAGE_TASK/history",
        params={"user": bob.user_id, "plan": "free"},
        headers=admin,
    )
    assert history.json()["resolved"] == 4
    assert [i["value"] for i in history.json()["items"]] == [2, 7, 4, 3]
    assert [i["before"] for i in history.json()["items"]] == [3, 4, 3, 1]
    listed = (await client.get("/admin/policies", headers=admin)).json()
    price = next(p for p in listed["items"] if p["key"] == "price.IMAGE_TASK")
    assert {(v["scope"], v["value"]) for v in price["values"]} == {
        ("global", 2),
        ("plan", 4),
        ("user", 7),
    }


async def test_a_future_effective_at_takes_effect_on_time(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    member = await sign_up(client)
    await grant(pool, member.user_id, 100)
    headers = await bearer(pool, "user", member.user_id)
    at = datetime.now(UTC) + timedelta(seconds=2)
    answer = await _put(
        client, admin, "price.IMAGE_TASK", scope="global", value=6, effective_at=at.isoformat()
    )
    assert answer.status_code == 200 and answer.json()["before"] == 1
    assert await _cost_of_new_job(client, headers) == 1
    listed = (await client.get("/admin/policies", headers=admin)).json()["items"]
    price = next(p for p in listed if p["key"] == "price.IMAGE_TASK")
    assert price["values"] == [] and [s["value"] for s in price["scheduled"]] == [6]
    await asyncio.sleep((at - datetime.now(UTC)).total_seconds() + 0.05)
    assert await _cost_of_new_job(client, headers) == 6


async def test_history_answers_as_of_a_past_instant(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    moments = []
    for value in (30, 40, 50):
        answer = await _put(
            client, admin, "limits.daily_rcc", scope="plan", scope_id="pro", value=value
        )
        assert answer.status_code == 200, answer.text
        moments.append(datetime.now(UTC))
        await asyncio.sleep(0.02)
    for moment, value in zip(moments, (30, 40, 50), strict=True):
        answer = await client.get(
            "/admin/policies/limits.daily_rcc/history",
            params={"as_of": moment.isoformat(), "plan": "pro"},
            headers=admin,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["resolved"] == value
        assert answer.json()["items"][0]["value"] == value  # nothing recorded later shows
    first = moments[0] - timedelta(seconds=5)
    early = await client.get(
        "/admin/policies/limits.daily_rcc/history",
        params={"as_of": first.isoformat(), "plan": "pro"},
        headers=admin,
    )
    assert early.json()["resolved"] is None and early.json()["items"] == []


async def test_the_log_alone_reproduces_every_resolved_value(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    # Each change records what its scope resolved to before and after it; rebuilding the
    # book from the events up to each version (a replay) must give the same answers.
    u1, u2 = await funded_user(pool, 0), await funded_user(pool, 0)
    changes = [
        ("global", "", 3), ("plan", "pro", 5), ("user", u1, 9), ("plan", "pro", 6),
        ("global", "", 2), ("user", u1, 1), ("plan", "free", 8),
    ]  # fmt: skip
    for scope, scope_id, value in changes:
        done = await execute(pool, _set_video_price(scope, scope_id, value))
        assert isinstance(done, Done), done
    rows = await owner.fetch(
        "SELECT version, type, data FROM events WHERE stream_id = 'policies' ORDER BY version"
    )
    assert len(rows) == len(changes)
    for row in rows:
        event = decode_event(row["type"], row["data"])
        assert isinstance(event, PolicySet)
        scope = {event.scope: event.scope_id} if event.scope != "global" else {}
        if event.scope == "user":
            scope["plan"] = "free"
        before = await load_book(owner, row["version"] - 1)
        after = await load_book(owner, row["version"])
        assert resolve(before, event.key, at=event.effective_at, **scope) == event.before
        assert resolve(after, event.key, at=event.effective_at, **scope) == event.after
    async with pool.acquire() as conn:
        cached = await current_book(conn)
    rebuilt = await load_book(owner)
    for plan in ("free", "pro", "team"):
        for user in (u1, u2):
            assert resolve(cached, "price.VIDEO_TASK", user=user, plan=plan) == resolve(
                rebuilt, "price.VIDEO_TASK", user=user, plan=plan
            )
    assert resolve(rebuilt, "price.VIDEO_TASK", user=u1, plan="pro") == 1
    assert resolve(rebuilt, "price.VIDEO_TASK", user=u2, plan="pro") == 6
    assert resolve(rebuilt, "price.VIDEO_TASK", user=u2, plan="free") == 8
    assert resolve(rebuilt, "price.VIDEO_TASK", user=u2, plan="team") == 2


def _set_video_price(scope: str, scope_id: str, value: int) -> SetPolicy:
    return SetPolicy(
        key="price.VIDEO_TASK", scope=scope, scope_id=scope_id, value=value, reason="r", actor="t"
    )


async def test_a_plan_price_change_reaches_only_that_plans_new_jobs(
    settings: Any, pool: asyncpg.Pool, projector: Any
) -> None:
    from portal.app import create_app
    from tests.conftest import portal_client

    async with portal_client(create_app(with_stripe(settings), pool=pool)) as http:
        admin = await bearer(pool, "admin")
        starter, free = await sign_up(http), await sign_up(http)
        start = int(time.time()) - 60
        price_id, amount = STARTER["month"]
        invoice = sp.invoice(
            user_id=starter.user_id, plan="starter", interval="month", price_id=price_id,
            amount=amount, period_start=start, period_end=start + 30 * 86400,
            subscription=sp.new_id("sub"), payment_intent=sp.new_id("pi"),
        )  # fmt: skip
        await delivered(http, sp.event("invoice.paid", invoice, api_version="2024-06-20"))
        await caught_up(pool)
        await grant(pool, free.user_id, 100)
        starter_h = await bearer(pool, "user", starter.user_id)
        free_h = await bearer(pool, "user", free.user_id)
        old = (await http.post("/jobs", json=IMAGE_JOB, headers=starter_h)).json()
        answer = await _put(
            http, admin, "price.IMAGE_TASK", scope="plan", scope_id="starter", value=3
        )
        assert answer.status_code == 200, answer.text
        assert await _cost_of_new_job(http, starter_h) == 3
        assert await _cost_of_new_job(http, free_h) == 1
        await caught_up(pool)
        again = (await http.get(f"/jobs/{old['id']}", headers=starter_h)).json()
        assert old["cost_rcc"] == again["cost_rcc"] == 1  # a created job keeps its price
        plans = {p["id"]: p for p in (await http.get("/plans")).json()["items"]}
        assert plans["starter"]["job_prices"]["IMAGE_TASK"] == 3
        assert plans["free"]["job_prices"]["IMAGE_TASK"] == 1


async def test_the_cli_sets_gets_and_shows_history(cli_env: dict[str, str]) -> None:
    from tests.serve_helpers import run_rcc

    out = run_rcc(cli_env, "policy", "set", "limits.daily_rcc", "25", "--reason", "ops")
    assert '"value":25' in out and '"before":null' in out
    seeded = run_rcc(cli_env, "policy", "seed-plans")
    assert seeded.count('"scope":"plan"') == 4  # free, starter, pro, enterprise
    got = run_rcc(cli_env, "policy", "get", "limits.daily_rcc", "--plan", "free")
    assert got.strip().endswith('{"key":"limits.daily_rcc","value":20}')
    history = run_rcc(cli_env, "policy", "history", "limits.daily_rcc", "--plan", "enterprise")
    assert '"resolved":null' in history and "seed plan limits" in history


async def test_the_signup_grant_and_its_lifetime_follow_their_policies(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    admin = await bearer(pool, "admin")
    for key, value in (("grants.signup_rcc", 15), ("lots.signup_days", 3)):
        assert (await _put(client, admin, key, scope="global", value=value)).status_code == 200
    await sign_up(client)
    me = (await client.get("/me")).json()
    assert me["balance_rcc"] == 15
    expires = datetime.fromisoformat(me["next_expiry"]["expires_at"])
    assert abs((expires - datetime.now(UTC)) - timedelta(days=3)) < timedelta(minutes=1)


async def test_the_rollover_cap_comes_from_the_environment_then_the_policy(
    settings: Any, pool: asyncpg.Pool
) -> None:
    """`lots.subscription_rollover_rcc` reaches the grant path: RCC_SUBSCRIPTION_ROLLOVER_RCC
    below it, a global policy above it (the webhook's month grant takes lot_policy's cap)."""
    import msgspec

    from rcc.policy.grants import lot_policy

    env_cap = msgspec.structs.replace(
        settings, lots=msgspec.structs.replace(settings.lots, subscription_rollover_rcc=20)
    )
    async with pool.acquire() as conn:
        assert (await lot_policy(conn, env_cap)).subscription_rollover_rcc == 20
    done = await execute(
        pool,
        SetPolicy(
            key="lots.subscription_rollover_rcc",
            scope="global",
            scope_id="",
            value=7,
            reason="r",
            actor="t",
        ),
    )
    assert isinstance(done, Done)
    async with pool.acquire() as conn:
        assert (await lot_policy(conn, env_cap)).subscription_rollover_rcc == 7
