"""An organisation buys credits through the same Stripe flows (the Stripe double over
real HTTP for Checkout, signed webhooks for the events): owners and admins only, the
org named in the session's metadata, the buyer recorded, granted to the org's wallet
once, and a refund clawed back from it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from portal.app import create_app
from projections.registry import select
from rcc.audit import verify
from rcc.config import Settings
from rcc.projector.replay import replay
from rcc.projector.runtime import ProjectorWorker
from tests import stripe_payloads as sp
from tests.conftest import portal_client
from tests.org_helpers import join, new_org, person
from tests.payment_helpers import (
    STARTER,
    STARTER_PER_MONTH,
    balance,
    caught_up,
    delivered,
    ledger_lines,
    payment_row,
)
from tests.projection_helpers import dump
from tests.stripe_double import StripeDouble


@pytest.fixture
async def http(
    pay_settings: Settings, pool: asyncpg.Pool, projector: ProjectorWorker
) -> AsyncIterator[httpx.AsyncClient]:
    async with portal_client(create_app(pay_settings, pool=pool)) as client:
        yield client


def _naming_org(obj: Any, org_id: str) -> Any:
    """The Stripe object with `rcc_org_id` wherever its metadata names the buyer, as the
    session's (and the subscription's) metadata put it there."""
    if isinstance(obj, dict):
        found = {k: _naming_org(v, org_id) for k, v in obj.items()}
        if "rcc_user_id" in obj:
            found["rcc_org_id"] = org_id
        return found
    if isinstance(obj, list):
        return [_naming_org(v, org_id) for v in obj]
    return obj


async def test_only_managers_buy_for_the_org_and_the_session_names_org_and_buyer(
    http: httpx.AsyncClient, pool: asyncpg.Pool, double: StripeDouble
) -> None:
    org = await new_org(http, pool)
    owner = org.people["owner"]
    member = await join(http, pool, org, "member")
    body = {"pack": "M", "wallet": org.wallet}
    bought = await http.post("/checkout/topup", json=body, headers=owner.headers)
    assert bought.status_code == 200, bought.text
    params = double.calls[-1].params
    assert (params["metadata[rcc_org_id]"], params["metadata[rcc_user_id]"]) == (
        org.id,
        owner.user_id,
    )
    plan = {"plan": "starter", "interval": "month", "wallet": org.wallet}
    subscribed = await http.post("/checkout/subscription", json=plan, headers=owner.headers)
    assert subscribed.status_code == 200, subscribed.text
    params = double.calls[-1].params
    assert params["subscription_data[metadata][rcc_org_id]"] == org.id
    assert params["subscription_data[metadata][rcc_user_id]"] == owner.user_id

    calls = len(double.calls)
    refused = await http.post("/checkout/topup", json=body, headers=member.headers)
    assert refused.status_code == 403, refused.text
    stranger = await person(pool)
    hidden = await http.post("/checkout/subscription", json=plan, headers=stranger.headers)
    assert hidden.status_code == 404, hidden.text
    assert len(double.calls) == calls  # nothing reached Stripe for them


async def test_a_pack_and_a_plan_are_granted_to_the_org_once_and_a_refund_claws_back(
    http: httpx.AsyncClient, pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    org = await new_org(http, pool)
    buyer = org.people["owner"]
    pi = sp.new_id("pi")
    session = sp.checkout_session(user_id=buyer.user_id, pack="M", amount=2500, payment_intent=pi)
    paid = sp.event("checkout.session.completed", _naming_org(session, org.id))
    for _ in range(3):  # redelivered: granted once
        assert (await delivered(http, paid))["outcome"] == "granted"
    assert await balance(pool, org.id) == 550
    assert await balance(pool, buyer.user_id) == 0  # the buyer's own wallet: untouched

    start = int(time.time()) - 60
    price_id, amount = STARTER["month"]
    invoice = sp.invoice(
        user_id=buyer.user_id, plan="starter", interval="month", price_id=price_id,
        amount=amount, period_start=start, period_end=start + 30 * 86400,
        subscription=sp.new_id("sub"), payment_intent=sp.new_id("pi"),
    )  # fmt: skip
    plan_paid = sp.event("invoice.paid", _naming_org(invoice, org.id))
    for _ in range(2):
        assert (await delivered(http, plan_paid))["outcome"] == "granted"
    assert await balance(pool, org.id) == 550 + STARTER_PER_MONTH

    refund = sp.charge(payment_intent=pi, amount=2500, amount_refunded=2500)
    assert (await delivered(http, sp.event("charge.refunded", refund)))["outcome"] == "refunded"
    assert await balance(pool, org.id) == STARTER_PER_MONTH
    assert await ledger_lines(pool, org.id) == [
        ("topup_granted", 550),
        ("subscription_granted", STARTER_PER_MONTH),
        ("credits_clawed_back", -550),
    ]
    await caught_up(pool)
    row = await payment_row(pool, pi)
    assert (row["user_id"], row["status"], row["clawed_back_rcc"]) == (
        buyer.user_id,
        "refunded",
        550,
    )
    ledger = await http.get(f"/orgs/{org.id}/ledger", headers=buyer.headers)
    assert [(r["reason"], r["delta"]) for r in ledger.json()["items"]] == [
        ("REFUND_CLAWBACK", -550),
        ("SUBSCRIPTION_GRANT", STARTER_PER_MONTH),
        ("TOPUP_GRANT", 550),
    ]
    assert (await verify(owner)).ok


async def test_the_org_is_its_own_stripe_customer_made_once_by_racing_first_purchases(
    http: httpx.AsyncClient, pool: asyncpg.Pool, double: StripeDouble, owner: asyncpg.Connection
) -> None:
    double.customer_latency_s = 0.3  # the second first purchase arrives while it is made
    org = await new_org(http, pool)
    boss = org.people["owner"]
    admin = await join(http, pool, org, "admin")
    member = await join(http, pool, org, "member")
    portal = f"/orgs/{org.id}/billing/portal"
    early = await http.post(portal, headers=boss.headers)
    assert early.status_code == 409 and early.json()["error"] == "no_stripe_customer"

    pack = {"pack": "M", "wallet": org.wallet}
    plan = {"plan": "starter", "interval": "month", "wallet": org.wallet}
    bought, subscribed = await asyncio.gather(
        http.post("/checkout/topup", json=pack, headers=boss.headers),
        http.post("/checkout/subscription", json=plan, headers=admin.headers),
    )
    assert bought.status_code == subscribed.status_code == 200, (bought.text, subscribed.text)
    (customer,) = [c["id"] for c in double.customers.values()]  # one customer at Stripe
    creations = double.customer_creations()
    assert len(creations) >= 2  # both purchases asked; Stripe's key made them one
    assert {c.headers["idempotency-key"] for c in creations} == {f"rcc-org-customer:{org.id}"}
    assert creations[0].params == {"name": "Studio", "metadata[rcc_org_id]": org.id}
    sessions = [c.params for c in double.calls if c.path == "/v1/checkout/sessions"]
    assert [s["customer"] for s in sessions] == [customer, customer]
    assert sorted(s["metadata[rcc_user_id]"] for s in sessions) == sorted(
        [boss.user_id, admin.user_id]
    )  # the buyer is still recorded, next to the org
    assert all(s["metadata[rcc_org_id]"] == org.id for s in sessions)
    assert "customer_creation" not in sessions[0]  # Stripe refuses it next to `customer`
    recorded = await owner.fetch(
        "SELECT data FROM events WHERE stream_id = $1 AND type = 'org_stripe_customer_set'",
        f"org-{org.id}",
    )
    assert [r["data"]["customer_id"] for r in recorded] == [customer]

    # Later purchases reuse it; a personal purchase names no org customer.
    made = len(creations)
    again = await http.post("/checkout/topup", json=pack, headers=admin.headers)
    assert again.status_code == 200 and double.calls[-1].params["customer"] == customer
    assert len(double.customer_creations()) == made
    mine = await http.post("/checkout/topup", json={"pack": "S"}, headers=boss.headers)
    assert mine.status_code == 200 and "customer" not in double.calls[-1].params

    # The customer portal for the org: its owner and admins; 403 a member, 404 others.
    for who in (boss, admin):
        opened = await http.post(portal, headers=who.headers)
        assert opened.status_code == 200, opened.text
        assert opened.json()["url"].startswith("https://billing.stripe.com/")
        assert double.calls[-1].params["customer"] == customer
    calls = len(double.calls)
    assert (await http.post(portal, headers=member.headers)).status_code == 403
    stranger = await person(pool)
    assert (await http.post(portal, headers=stranger.headers)).status_code == 404
    assert len(double.calls) == calls  # nothing reached Stripe for them

    await caught_up(pool)
    rows = await owner.fetch("SELECT org_id, customer_id, set_by FROM org_stripe_customers")
    assert (org.id, customer) in [(r["org_id"], r["customer_id"]) for r in rows]
    live = (await dump(owner))["org_stripe_customers"]
    await replay(owner, select(["org_billing"]))
    assert (await dump(owner))["org_stripe_customers"] == live  # rebuilt by replay
