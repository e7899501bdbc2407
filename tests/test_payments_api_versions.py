"""Stripe's current API (2025-03-31 and later) next to the classic one: an annual plan paid
through an InvoicePayment and refunded by its PaymentIntent is taken back like a classic
one, and events of API versions RCC does not read are refused (webhook and reconcile)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from portal.app import create_app
from rcc.adapters.stripe_events import SDK_API_VERSION
from rcc.config import Settings
from rcc.domain.catalog import DEFAULT_CATALOG
from rcc.projector.runtime import ProjectorWorker
from rcc.service.stripe_inbox import reconcile
from tests import stripe_payloads as sp
from tests.conftest import portal_client
from tests.payment_helpers import (
    STARTER,
    STARTER_PER_MONTH,
    ago,
    balance,
    caught_up,
    deliver,
    delivered,
    payment_row,
    received,
    with_stripe,
)
from tests.portal_helpers import sign_up

CURRENT = SDK_API_VERSION  # what the endpoint is set to (docs/PAYMENTS.md)


@pytest.fixture
async def http(
    settings: Settings, pool: asyncpg.Pool, projector: ProjectorWorker
) -> AsyncIterator[httpx.AsyncClient]:
    async with portal_client(create_app(with_stripe(settings), pool=pool)) as client:
        yield client


def _annual_invoice(user_id: str, subscription: str) -> dict[str, Any]:
    """An annual plan's first invoice in the current shape: no payment_intent on it."""
    price_id, amount = STARTER["year"]
    start = ago(3600)
    body = sp.invoice(
        user_id=user_id, plan="starter", interval="year", price_id=price_id, amount=amount,
        period_start=start, period_end=start + 365 * 86400, subscription=subscription,
        payment_intent=None, shape="basil",
    )  # fmt: skip
    assert "payment_intent" not in body
    return body


async def _open_months(pool: asyncpg.Pool, key: str) -> int:
    async with pool.acquire() as conn:
        found: int = await conn.fetchval(
            """SELECT count(*) FROM subscription_schedule
                WHERE payment_key = $1 AND granted_at IS NULL AND cancelled_at IS NULL""",
            key,
        )
    return found


@pytest.mark.parametrize("link_first", [False, True])
async def test_a_full_refund_of_an_annual_plan_in_the_current_shape_takes_it_back(
    http: httpx.AsyncClient, pool: asyncpg.Pool, link_first: bool
) -> None:
    """Once: nothing taken back, a payment of type `unknown`, 11 months still scheduled."""
    user = (await sign_up(http)).user_id
    invoice = _annual_invoice(user, sp.new_id("sub"))
    pi = sp.new_id("pi")
    paid = sp.event("invoice.paid", invoice, api_version=CURRENT)
    link = sp.event(
        "invoice_payment.paid",
        sp.invoice_payment(invoice_id=invoice["id"], payment_intent=pi, amount=12000),
        api_version=CURRENT,
    )
    for event in [link, paid] if link_first else [paid, link]:
        answer = await delivered(http, event)
        assert answer["outcome"] in {"granted", "linked"}, answer
    assert await balance(pool, user) == STARTER_PER_MONTH
    assert await _open_months(pool, invoice["id"]) == 11

    refund = sp.event(
        "charge.refunded",
        sp.charge(payment_intent=pi, amount=12000, amount_refunded=12000),
        api_version=CURRENT,
    )
    answer = await delivered(http, refund)
    assert answer["outcome"] == "refunded", answer
    assert await balance(pool, user) == 0
    assert await _open_months(pool, invoice["id"]) == 0
    await caught_up(pool)
    row = await payment_row(pool, invoice["id"])
    assert (row["type"], row["status"], row["clawed_back_rcc"]) == (
        "subscription", "refunded", STARTER_PER_MONTH,
    )  # fmt: skip
    async with pool.acquire() as conn:
        unknown = await conn.fetchval("SELECT count(*) FROM payments WHERE type = 'unknown'")
    assert unknown == 0


async def test_a_dispute_by_payment_intent_reaches_the_invoice_payment(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = (await sign_up(http)).user_id
    invoice = _annual_invoice(user, sp.new_id("sub"))
    pi = sp.new_id("pi")
    await delivered(http, sp.event("invoice.paid", invoice, api_version=CURRENT))
    linked = sp.invoice_payment(invoice_id=invoice["id"], payment_intent=pi, amount=12000)
    await delivered(http, sp.event("invoice_payment.paid", linked, api_version=CURRENT))
    dispute = sp.event("charge.dispute.created", sp.dispute(payment_intent=pi, amount=12000),
                       api_version=CURRENT)  # fmt: skip
    assert (await delivered(http, dispute))["outcome"] == "disputed"
    assert await balance(pool, user) == 0
    assert await _open_months(pool, invoice["id"]) == 0


@pytest.mark.parametrize("version", ["2024-06-20", "2025-03-31.basil", CURRENT])
async def test_the_versions_rcc_reads_are_accepted(http: httpx.AsyncClient, version: str) -> None:
    event = sp.event("customer.created", {"id": sp.new_id("cus"), "object": "customer"},
                     api_version=version)  # fmt: skip
    assert (await delivered(http, event))["outcome"] == "ignored"


@pytest.mark.parametrize("version", ["2019-12-03", "2099-01-01.future", "", "latest"])
async def test_other_api_versions_are_refused_with_nothing_written(
    http: httpx.AsyncClient, pool: asyncpg.Pool, version: str
) -> None:
    event = sp.event("customer.created", {"id": sp.new_id("cus"), "object": "customer"},
                     api_version=version)  # fmt: skip
    answer = await deliver(http, event)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["error"] == "unsupported_api_version"
    assert CURRENT in body["detail"]  # says what to set the endpoint to
    assert await received(pool, event["id"]) == []


async def test_reconcile_leaves_events_of_other_versions_out(pool: asyncpg.Pool) -> None:
    good = sp.event("customer.created", {"id": sp.new_id("cus")}, api_version=CURRENT,
                    created=int(time.time()))  # fmt: skip
    bad = sp.event("customer.created", {"id": sp.new_id("cus")}, api_version="2099-01-01")
    said: list[str] = []
    report = await reconcile(pool, [good, bad], DEFAULT_CATALOG, said.append)
    assert [a.event_id for a in report.applied] == [good["id"]]
    assert len(report.failed) == 1 and bad["id"] in report.failed[0]
    assert any("FAILED" in line and "2099-01-01" in line for line in said)
    assert await received(pool, bad["id"]) == []


async def _cancelled_annual_plan(http: httpx.AsyncClient, *, cancel: bool) -> tuple[str, str]:
    """A paid annual plan (month 1 granted), cancelled at once when `cancel`: (user, pi)."""
    user = (await sign_up(http)).user_id
    sub, pi = sp.new_id("sub"), sp.new_id("pi")
    price_id, amount = STARTER["year"]
    start = ago(3600)
    body = sp.invoice(
        user_id=user, plan="starter", interval="year", price_id=price_id, amount=amount,
        period_start=start, period_end=start + 365 * 86400, subscription=sub, payment_intent=pi,
    )  # fmt: skip
    assert (await delivered(http, sp.event("invoice.paid", body)))["outcome"] == "granted"
    if cancel:
        deleted = sp.subscription(subscription_id=sub, user_id=user, plan="starter",
                                  price_id=price_id, ended_at=ago(60))  # fmt: skip
        ended = await delivered(http, sp.event("customer.subscription.deleted", deleted))
        assert ended["outcome"] == "ended", ended
    return user, pi


@pytest.mark.parametrize(
    ("cancel", "refunded", "left"),
    [
        (True, 11_000, STARTER_PER_MONTH),  # the 11 cancelled months, refunded pro rata
        (True, 12_000, 0),  # everything: the granted month too
        (False, 11_000, 0),  # a live plan: the granted month is within what was refunded
    ],
)
async def test_a_refund_of_a_cancelled_plan_takes_back_only_what_was_not_cancelled(
    http: httpx.AsyncClient, pool: asyncpg.Pool, cancel: bool, refunded: int, left: int
) -> None:
    """Once, a pro-rata refund after a cancellation took back the month already granted
    as well: the cancellation had already taken away the 11 months it paid for."""
    user, pi = await _cancelled_annual_plan(http, cancel=cancel)
    assert await balance(pool, user) == STARTER_PER_MONTH
    refund = sp.event(
        "charge.refunded", sp.charge(payment_intent=pi, amount=12_000, amount_refunded=refunded)
    )
    assert (await delivered(http, refund))["outcome"] == "refunded"
    assert await balance(pool, user) == left
    # A live plan's later months still come (a partial refund is taken from them too).
    assert await _open_months(pool, pi) == (0 if cancel else 11)
