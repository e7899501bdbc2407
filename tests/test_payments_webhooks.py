"""POST /webhooks/stripe end to end on real PostgreSQL: signed payloads of real Stripe
event shapes, duplicates, reordering, concurrency, bad signatures, catalog checks,
refunds and disputes, and what admins see."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from portal.app import create_app
from projections.registry import ALL
from rcc.audit import verify
from rcc.config import Settings
from rcc.projector.replay import replay
from rcc.projector.runtime import ProjectorWorker
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests import stripe_payloads as sp
from tests.conftest import portal_client
from tests.helpers import snapshot
from tests.payment_helpers import (
    STARTER,
    STARTER_PER_MONTH,
    ago,
    balance,
    caught_up,
    deliver,
    delivered,
    ledger_lines,
    payment_row,
    received,
    with_stripe,
)
from tests.portal_helpers import bearer, sign_up
from tests.projection_helpers import dump

MONTH = 30 * 86400


@pytest.fixture
async def pay(settings: Settings, pool: asyncpg.Pool, projector: ProjectorWorker) -> Any:
    return create_app(with_stripe(settings), pool=pool)


@pytest.fixture
async def http(pay: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with portal_client(pay) as client:
        yield client


async def _user(http: httpx.AsyncClient) -> str:
    return (await sign_up(http)).user_id


def _topup(user_id: str, pack: str = "M", amount: int = 2500, **kw: Any) -> dict[str, Any]:
    pi = kw.pop("payment_intent", None) or sp.new_id("pi")
    session = sp.checkout_session(
        user_id=user_id, pack=pack, amount=amount, payment_intent=pi, **kw
    )
    return sp.event("checkout.session.completed", session)


def _invoice_paid(
    user_id: str | None,
    sub: str,
    start: int,
    interval: str = "month",
    *,
    pi: str | None = None,
    shape: str = "classic",
    **kw: Any,
) -> dict[str, Any]:
    price_id, amount = STARTER[interval]
    end = start + (365 * 86400 if interval == "year" else MONTH)
    body = sp.invoice(
        user_id=user_id,
        plan="starter",
        interval=interval,
        price_id=price_id,
        amount=kw.pop("amount", amount),
        period_start=start,
        period_end=end,
        subscription=sub,
        payment_intent=pi if pi is not None else sp.new_id("pi"),
        shape=shape,
        **kw,
    )
    return sp.event(
        "invoice.paid", body, api_version="2024-06-20" if shape == "classic" else "2025-03-31.basil"
    )


async def test_a_paid_pack_is_credited_once_whatever_the_redeliveries(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await _user(http)
    event = _topup(user, "M")
    first = await delivered(http, event)
    assert first["outcome"] == "granted" and first["duplicate"] is False
    for _ in range(3):
        again = await delivered(http, event)
        assert again["duplicate"] is True and again["outcome"] == "granted"
    assert await balance(pool, user) == 550
    pi = event["data"]["object"]["payment_intent"]
    assert await ledger_lines(pool, user) == [("topup_granted", 550)]
    assert [r["stream_id"] for r in await received(pool, event["id"])] == [f"payment-{pi}"]
    ledger = (await http.get("/ledger")).json()["items"]
    assert [(e["reason"], e["delta"], e["external_ref"]) for e in ledger] == [
        ("TOPUP_GRANT", 550, pi)
    ]


async def test_ten_simultaneous_deliveries_of_one_event_grant_once(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await _user(http)
    event = _topup(user, "L", 5000)
    answers = await asyncio.gather(*(deliver(http, event) for _ in range(10)))
    assert [a.status_code for a in answers] == [200] * 10
    assert sum(not a.json()["duplicate"] for a in answers) == 1
    assert {a.json()["outcome"] for a in answers} == {"granted"}
    assert await balance(pool, user) == 1200
    assert len(await received(pool, event["id"])) == 1
    # A second event for the same payment (async_payment_succeeded) adds nothing either.
    succeeded = sp.event("checkout.session.async_payment_succeeded", event["data"]["object"])
    both = await asyncio.gather(*(deliver(http, succeeded) for _ in range(5)))
    assert {a.json()["outcome"] for a in both} == {"ignored"}
    assert await ledger_lines(pool, user) == [("topup_granted", 1200)]


async def test_bad_missing_or_stale_signatures_are_400_with_no_effect(
    http: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await _user(http)
    event = _topup(user, "S", 500)
    before = await snapshot(owner)
    raw = sp.encode(event)
    tampered = raw.replace(b'"amount_total": 500', b'"amount_total": 50000')
    assert tampered != raw
    attempts = [
        await deliver(http, event, secret="whsec_not_the_endpoint_secret"),
        await deliver(http, event, timestamp=int(time.time()) - 301),  # beyond 300 s tolerance
        await deliver(http, event, body=tampered),  # signed the original, sent another
        await http.post("/webhooks/stripe", content=raw),  # no header at all
        await http.post("/webhooks/stripe", content=raw, headers={"stripe-signature": "t=1,v0=x"}),
        await http.post("/webhooks/stripe", content=raw, headers={"stripe-signature": "garbage"}),
    ]
    for response in attempts:
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "bad_signature"
    assert await snapshot(owner) == before, "a refused delivery wrote nothing"
    # A signature within the tolerance (a slow retry) is fine.
    assert (await deliver(http, event, timestamp=int(time.time()) - 120)).status_code == 200
    assert await balance(pool, user) == 100


async def test_amount_or_currency_not_the_catalogs_is_refused_recorded_and_flagged(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await _user(http)
    cheap = _topup(user, "L", 500)  # pack L costs 5000
    wrong_currency = _topup(user, "M", 2500, currency="eur")
    unknown_pack = _topup(user, "XXL", 2500)
    for event in (cheap, wrong_currency, unknown_pack):
        answer = await delivered(http, event)
        assert answer["outcome"] == "rejected", answer
    assert await balance(pool, user) == 0
    await caught_up(pool)
    admin = await bearer(pool, "admin")
    rows = (await http.get("/admin/payments", headers=admin)).json()["items"]
    assert sorted((r["status"], r["amount"], r["currency"], r["credits_rcc"]) for r in rows) == [
        ("rejected", 500, "usd", 1200),
        ("rejected", 2500, "eur", 550),
        ("rejected", 2500, "usd", 0),
    ]
    assert any("not the catalog's price 5000" in r["detail"] for r in rows)
    flagged = (await http.get("/admin/users", headers=admin)).json()["items"]
    assert [u["payment_issue"] is not None for u in flagged] == [True]
    dashboard = (await http.get("/admin/dashboard", headers=admin)).json()
    assert dashboard["payment_errors_7d"] == 3 and dashboard["payments_7d"] == 0


async def test_delayed_payment_pending_then_succeeded_or_failed(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await _user(http)
    pending = _topup(user, "S", 500, payment_status="unpaid")
    assert (await delivered(http, pending))["outcome"] == "pending"
    assert await balance(pool, user) == 0
    session = dict(pending["data"]["object"], payment_status="paid")
    succeeded = sp.event("checkout.session.async_payment_succeeded", session)
    assert (await delivered(http, succeeded))["outcome"] == "granted"
    assert await balance(pool, user) == 100

    other = _topup(user, "M", 2500, payment_status="unpaid")
    await delivered(http, other)
    failed = sp.event("checkout.session.async_payment_failed", other["data"]["object"])
    assert (await delivered(http, failed))["outcome"] == "failed"
    assert await balance(pool, user) == 100
    await caught_up(pool)
    key = other["data"]["object"]["payment_intent"]
    assert (await payment_row(pool, key))["status"] == "failed"


async def test_monthly_plan_first_invoice_and_renewal(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await _user(http)
    sub = sp.new_id("sub")
    first_invoice = sp.new_id("in")
    session = sp.checkout_session(
        user_id=user, mode="subscription", plan="starter", amount=1200,
        subscription=sub, invoice=first_invoice,
    )  # fmt: skip
    assert (await delivered(http, sp.event("checkout.session.completed", session)))[
        "outcome"
    ] == "linked"
    start = ago(60)
    first = _invoice_paid(user, sub, start, invoice_id=first_invoice)
    renewal = _invoice_paid(user, sub, start + MONTH, billing_reason="subscription_cycle")
    assert (await delivered(http, first))["outcome"] == "granted"
    assert (await delivered(http, renewal))["outcome"] == "granted"
    assert (await delivered(http, renewal))["duplicate"] is True
    # The renewal ends the first month's credits (no rollover by default: issue 12).
    assert await balance(pool, user) == STARTER_PER_MONTH
    ledger = (await http.get("/ledger")).json()["items"]
    assert [(e["reason"], e["delta"]) for e in ledger] == [
        ("SUBSCRIPTION_GRANT", 300),
        ("CREDITS_EXPIRED", -300),
        ("SUBSCRIPTION_GRANT", 300),
    ]
    await caught_up(pool)
    me = (await http.get("/me")).json()
    assert me["plan"] == "starter"


async def test_invoice_paid_before_checkout_completed_grants_once(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    # With the subscription's metadata on the invoice: credited at once, linking after.
    user = await _user(http)
    sub = sp.new_id("sub")
    paid = _invoice_paid(user, sub, ago(30))
    assert (await delivered(http, paid))["outcome"] == "granted"
    session = sp.checkout_session(
        user_id=user, mode="subscription", plan="starter", amount=1200, subscription=sub
    )
    assert (await delivered(http, sp.event("checkout.session.completed", session)))[
        "outcome"
    ] == "ignored"
    assert await balance(pool, user) == STARTER_PER_MONTH

    # Without metadata (newer invoice shape, nothing to say whose it is): held, then
    # credited exactly once when checkout's event links the subscription to the user.
    other = await _user(http)
    sub2 = sp.new_id("sub")
    bare = _invoice_paid(None, sub2, ago(30), shape="basil")
    assert (await delivered(http, bare))["outcome"] == "held"
    session2 = sp.checkout_session(
        user_id=other, mode="subscription", plan="starter", amount=1200, subscription=sub2
    )
    completed = sp.event("checkout.session.completed", session2)
    answers = await asyncio.gather(*(deliver(http, completed) for _ in range(4)))
    assert {a.json()["outcome"] for a in answers} == {"linked"}
    assert await balance(pool, other) == STARTER_PER_MONTH
    assert (await delivered(http, bare))["duplicate"] is True
    assert await ledger_lines(pool, other) == [("subscription_granted", 300)]


async def test_failed_invoice_is_recorded_flagged_and_counted_then_cleared(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await _user(http)
    sub, pi, invoice_id = sp.new_id("sub"), sp.new_id("pi"), sp.new_id("in")
    start = ago(100)
    failed_body = sp.invoice(
        user_id=user, plan="starter", interval="month", price_id=STARTER["month"][0],
        amount=1200, period_start=start, period_end=start + MONTH, subscription=sub,
        payment_intent=pi, invoice_id=invoice_id, paid=False, attempt_count=2,
    )  # fmt: skip
    failed = sp.event("invoice.payment_failed", failed_body)
    assert (await delivered(http, failed))["outcome"] == "failed"
    assert await balance(pool, user) == 0
    await caught_up(pool)
    admin = await bearer(pool, "admin")
    view = (await http.get("/admin/users", headers=admin)).json()["items"][0]
    assert "payment attempt 2 failed" in view["payment_issue"]
    dashboard = (await http.get("/admin/dashboard", headers=admin)).json()
    assert dashboard["payment_errors_7d"] == 1
    rows = (await http.get("/admin/payments", headers=admin, params={"status": "failed"})).json()
    assert [r["external_ref"] for r in rows["items"]] == [pi]

    # Stripe's retry succeeds: the same payment is paid, credited and the flag cleared.
    paid = _invoice_paid(user, sub, start, pi=pi, invoice_id=invoice_id)
    assert (await delivered(http, paid))["outcome"] == "granted"
    await caught_up(pool)
    assert (await payment_row(pool, pi))["status"] == "paid"
    view = (await http.get("/admin/users", headers=admin)).json()["items"][0]
    assert view["payment_issue"] is None
    assert await balance(pool, user) == STARTER_PER_MONTH


async def _spend(pool: asyncpg.Pool, user: str, jobs: int) -> None:
    """Spend 5 RCC per video job that succeeds."""
    for _ in range(jobs):
        made = await execute(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
        assert isinstance(made, Done), made
        for status in ("queued", "running", "succeeded"):
            moved = await execute(pool, c.MarkJob(job_id=made.result["job_id"], status=status))
            assert isinstance(moved, Done), moved


async def test_refund_after_credits_were_partly_spent_leaves_zero_and_a_shortfall(
    http: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await _user(http)
    event = _topup(user, "S", 500)
    pi = event["data"]["object"]["payment_intent"]
    await delivered(http, event)
    await _spend(pool, user, 3)
    assert await balance(pool, user) == 85
    refunded = sp.event("charge.refunded", sp.charge(payment_intent=pi, amount=500,
                                                      amount_refunded=500))  # fmt: skip
    answer = await delivered(http, refunded)
    assert answer["outcome"] == "refunded"
    assert await balance(pool, user) == 0, "never below zero"
    lines = await ledger_lines(pool, user)
    assert lines[-1] == ("credits_clawed_back", -85)
    # A dispute of the same payment afterwards: recorded, nothing more to take.
    disputed = sp.event("charge.dispute.created", sp.dispute(payment_intent=pi, amount=500))
    assert (await delivered(http, disputed))["outcome"] == "disputed"
    assert await ledger_lines(pool, user) == lines
    await caught_up(pool)
    row = await payment_row(pool, pi)
    assert (row["status"], row["clawed_back_rcc"], row["shortfall_rcc"]) == ("disputed", 85, 15)
    admin = await bearer(pool, "admin")
    payments = (await http.get("/admin/payments", headers=admin)).json()["items"]
    assert {(p["type"], p["status"]) for p in payments} == {
        ("topup", "disputed"),
        ("clawback", "refunded"),
    }
    clawback = next(p for p in payments if p["type"] == "clawback")
    assert (clawback["credits_rcc"], clawback["detail"]) == (-85, "shortfall 15 RCC")
    stripe_row = next(p for p in payments if p["type"] == "topup")
    assert (stripe_row["shortfall_rcc"], stripe_row["refunded_amount"]) == (15, 500)
    assert (await verify(owner)).ok


async def test_partial_refunds_in_any_order_take_back_the_refunded_share_once(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await _user(http)
    event = _topup(user, "M", 2500)  # 550 RCC
    pi = event["data"]["object"]["payment_intent"]
    await delivered(http, event)
    partial = sp.event("charge.refunded", sp.charge(payment_intent=pi, amount=2500,
                                                     amount_refunded=1000))  # fmt: skip
    full = sp.event("charge.refunded", sp.charge(payment_intent=pi, amount=2500,
                                                  amount_refunded=2500))  # fmt: skip
    assert (await delivered(http, partial))["outcome"] == "refunded"
    assert await balance(pool, user) == 550 - 220  # 40 % of 550
    await caught_up(pool)
    assert (await payment_row(pool, pi))["status"] == "partially_refunded"
    assert (await delivered(http, full))["outcome"] == "refunded"
    assert await balance(pool, user) == 0

    # Reordered: the full refund's event first, the partial one late. Same result.
    other = await _user(http)
    event2 = _topup(other, "M", 2500)
    pi2 = event2["data"]["object"]["payment_intent"]
    await delivered(http, event2)
    for refund in (
        sp.event("charge.refunded", sp.charge(payment_intent=pi2, amount=2500,
                                               amount_refunded=2500)),
        sp.event("charge.refunded", sp.charge(payment_intent=pi2, amount=2500,
                                               amount_refunded=1000)),
    ):  # fmt: skip
        await delivered(http, refund)
    assert await ledger_lines(pool, other) == [
        ("topup_granted", 550),
        ("credits_clawed_back", -550),
    ]
    await caught_up(pool)
    assert (await payment_row(pool, pi2))["status"] == "refunded"


async def test_a_refund_delivered_before_its_payment_is_applied_when_the_payment_lands(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await _user(http)
    event = _topup(user, "S", 500)
    pi = event["data"]["object"]["payment_intent"]
    refund = sp.event("charge.refunded", sp.charge(payment_intent=pi, amount=500,
                                                    amount_refunded=500))  # fmt: skip
    assert (await delivered(http, refund))["outcome"] == "refunded"
    assert (await delivered(http, event))["outcome"] == "granted"
    assert await ledger_lines(pool, user) == [("topup_granted", 100), ("credits_clawed_back", -100)]
    await caught_up(pool)
    assert (await payment_row(pool, pi))["status"] == "refunded"


async def test_a_disputed_plan_payment_is_clawed_back(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = await _user(http)
    pi = sp.new_id("pi")
    await delivered(http, _invoice_paid(user, sp.new_id("sub"), ago(10), pi=pi))
    dispute = sp.event("charge.dispute.created", sp.dispute(payment_intent=pi, amount=1200))
    answer = await delivered(http, dispute)
    assert (answer["outcome"], await balance(pool, user)) == ("disputed", 0)
    await caught_up(pool)
    assert (await payment_row(pool, pi))["status"] == "disputed"


async def test_unknown_and_unused_event_types_are_acknowledged_and_recorded(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    unknown = sp.event("customer.created", {"id": sp.new_id("cus"), "object": "customer"})
    answer = await delivered(http, unknown)
    assert (answer["outcome"], answer["type"]) == ("ignored", "customer.created")
    assert [r["stream_id"] for r in await received(pool, unknown["id"])] == [
        f"stripe-{unknown['id']}"
    ]
    one_off = sp.invoice(
        user_id=None, plan="x", interval="month", price_id="price_other", amount=100,
        period_start=ago(5), period_end=ago(1), subscription="", payment_intent=None,
    )  # fmt: skip
    one_off.pop("subscription")
    assert (await delivered(http, sp.event("invoice.paid", one_off)))["outcome"] == "ignored"
    not_json = b"{not json"
    response = await http.post(
        "/webhooks/stripe", content=not_json, headers={"stripe-signature": sp.sign(not_json)}
    )
    assert response.status_code == 400 and response.json()["error"] == "invalid_event"


async def test_webhooks_without_a_configured_secret_are_refused(
    client: httpx.AsyncClient,
) -> None:
    """The default test settings have no STRIPE_WEBHOOK_SECRET: nothing can be forged."""
    raw = json.dumps(sp.event("customer.created", {"id": "cus_1"})).encode()
    response = await client.post(
        "/webhooks/stripe", content=raw, headers={"stripe-signature": sp.sign(raw, "")}
    )
    assert response.status_code == 503 and response.json()["error"] == "webhooks_not_configured"


async def test_payments_projection_equals_replay_and_the_audit_holds(
    http: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await _user(http)
    events = [_topup(user, "S", 500), _topup(user, "M", 100), _topup(user, "L", 5000)]
    sub, pi = sp.new_id("sub"), sp.new_id("pi")
    events.append(_invoice_paid(user, sub, ago(40), "year", pi=pi))
    l_pi = events[2]["data"]["object"]["payment_intent"]
    events.append(sp.event("charge.refunded", sp.charge(payment_intent=l_pi, amount=5000,
                                                         amount_refunded=2000)))  # fmt: skip
    ended = sp.subscription(
        subscription_id=sub, user_id=user, plan="starter", price_id=STARTER["year"][0],
        ended_at=ago(5),
    )  # fmt: skip
    events.append(sp.event("customer.subscription.deleted", ended))
    for event in events:
        await delivered(http, event)
    await caught_up(pool)
    admin = await bearer(pool, "admin")
    shown = (await http.get("/admin/payments", headers=admin, params={"limit": 50})).json()
    statuses = sorted((p["type"], p["status"], p["credits_granted_rcc"]) for p in shown["items"])
    assert statuses == [
        ("clawback", "refunded", 0),
        ("subscription", "paid", STARTER_PER_MONTH),
        ("topup", "paid", 100),
        ("topup", "partially_refunded", 1200),
        ("topup", "rejected", 0),
    ]
    live = await dump(owner)
    await replay(owner, ALL, batch_size=3)
    assert await dump(owner) == live, "the read models equal a replay from position 0"
    report = await verify(owner)
    assert report.ok, report.problems
    assert report.balances[user] == await balance(pool, user) == 100 + 1200 - 480 + 300
