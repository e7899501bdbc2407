"""GET /catalog, Checkout Sessions through the stripe SDK against a local Stripe API
double over real HTTP (the exact parameters sent), and `rcc stripe reconcile`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from portal.app import create_app
from rcc.adapters.stripe_api import list_events, stripe_client
from rcc.config import Settings, load_settings
from rcc.domain.catalog import CatalogError, parse_catalog
from rcc.projector.runtime import ProjectorWorker
from rcc.service.stripe_inbox import reconcile
from tests import stripe_payloads as sp
from tests.conftest import portal_client
from tests.payment_helpers import ago, balance, delivered, received
from tests.portal_helpers import Member, bearer, sign_up
from tests.stripe_double import StripeDouble

PUBLIC = "http://127.0.0.1:8000"


@pytest.fixture
async def http(
    pay_settings: Settings, pool: asyncpg.Pool, projector: ProjectorWorker
) -> AsyncIterator[httpx.AsyncClient]:
    async with portal_client(create_app(pay_settings, pool=pool)) as client:
        yield client


async def test_catalog_lists_packs_and_plans(http: httpx.AsyncClient) -> None:
    catalog = (await http.get("/catalog")).json()
    assert [(p["id"], p["credits"], p["price"], p["currency"]) for p in catalog["packs"]] == [
        ("S", 100, 500, "usd"),
        ("M", 550, 2500, "usd"),
        ("L", 1200, 5000, "usd"),
    ]
    starter = catalog["plans"][0]
    assert starter == {
        "id": "starter",
        "name": "Starter",
        "credits_per_month": 300,
        "currency": "usd",
        "month": {"price": 1200, "credits": 300},
        "year": {"price": 12000, "credits": 3600},
    }
    assert "stripe_price_id" not in json.dumps(catalog)


async def test_topup_checkout_sends_exactly_these_parameters(
    http: httpx.AsyncClient, double: StripeDouble
) -> None:
    member = await sign_up(http)
    uid = member.user_id
    made = await http.post("/checkout/topup", json={"pack": "M"}, headers=member.headers)
    assert made.status_code == 200, made.text
    assert made.json() == {
        "url": "https://checkout.stripe.com/c/pay/cs_test_0001",
        "session_id": "cs_test_0001",
    }
    [call] = double.calls
    assert (call.method, call.path) == ("POST", "/v1/checkout/sessions")
    assert call.params == {
        "mode": "payment",
        "line_items[0][price]": "price_rcc_pack_m",
        "line_items[0][quantity]": "1",
        "client_reference_id": uid,
        "metadata[rcc_user_id]": uid,
        "metadata[rcc_pack]": "M",
        "success_url": f"{PUBLIC}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{PUBLIC}/billing/cancel",
    }
    assert call.headers["idempotency-key"].startswith(f"rcc-checkout:{uid}:topup:")
    assert call.headers["authorization"] == "Bearer sk_test_rcc_51Hx"
    # Every request its own key; a client's own key is kept for its retries.
    await http.post("/checkout/topup", json={"pack": "M"}, headers=member.headers)
    assert double.calls[1].headers["idempotency-key"] != call.headers["idempotency-key"]
    retry = {**member.headers, "Idempotency-Key": "order-7"}
    first = await http.post("/checkout/topup", json={"pack": "S"}, headers=retry)
    second = await http.post("/checkout/topup", json={"pack": "S"}, headers=retry)
    assert first.json() == second.json()
    assert [c.headers["idempotency-key"] for c in double.calls[2:]] == [
        f"rcc-checkout:{uid}:topup:order-7"
    ] * 2


async def test_subscription_checkout_sends_exactly_these_parameters(
    http: httpx.AsyncClient, double: StripeDouble
) -> None:
    member = await sign_up(http)
    uid = member.user_id
    for interval, price in (("month", "price_rcc_pro_month"), ("year", "price_rcc_pro_year")):
        made = await http.post(
            "/checkout/subscription",
            json={"plan": "pro", "interval": interval},
            headers=member.headers,
        )
        assert made.status_code == 200, made.text
        assert double.calls[-1].params == {
            "mode": "subscription",
            "line_items[0][price]": price,
            "line_items[0][quantity]": "1",
            "client_reference_id": uid,
            "metadata[rcc_user_id]": uid,
            "metadata[rcc_plan]": "pro",
            "subscription_data[metadata][rcc_user_id]": uid,
            "subscription_data[metadata][rcc_plan]": "pro",
            "success_url": f"{PUBLIC}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": f"{PUBLIC}/billing/cancel",
        }
        key = double.calls[-1].headers["idempotency-key"]
        assert key.startswith(f"rcc-checkout:{uid}:subscription:")


async def test_checkout_refusals(
    http: httpx.AsyncClient, double: StripeDouble, pool: asyncpg.Pool, portal_app: Any
) -> None:
    member = await sign_up(http)
    h = member.headers
    bad_pack = await http.post("/checkout/topup", json={"pack": "XL"}, headers=h)
    assert bad_pack.status_code == 422 and bad_pack.json()["error"] == "unknown_pack"
    bad_plan = await http.post(
        "/checkout/subscription", json={"plan": "gold", "interval": "month"}, headers=h
    )
    assert bad_plan.status_code == 422 and bad_plan.json()["error"] == "unknown_plan"
    bad_interval = await http.post(
        "/checkout/subscription", json={"plan": "pro", "interval": "week"}, headers=h
    )
    assert bad_interval.status_code == 400
    no_csrf = await http.post("/checkout/topup", json={"pack": "S"})
    assert no_csrf.status_code == 403
    async with portal_client(portal_app) as anonymous:
        assert (await anonymous.post("/checkout/topup", json={"pack": "S"})).status_code == 401
        # The default test settings have no STRIPE_SECRET_KEY.
        plain = await sign_up(anonymous)
        off = await anonymous.post("/checkout/topup", json={"pack": "S"}, headers=plain.headers)
        assert off.status_code == 503 and off.json()["error"] == "payments_not_configured"
    service = await bearer(pool, "service")
    assert (
        await http.post("/checkout/topup", json={"pack": "S"}, headers=service)
    ).status_code == 403
    assert double.calls == [], "nothing reached Stripe"
    double.fail_with = (
        400,
        {"error": {"type": "invalid_request_error", "message": "No such price: 'price_x'"}},
    )
    failed = await http.post("/checkout/topup", json={"pack": "S"}, headers=h)
    assert failed.status_code == 502 and failed.json()["error"] == "payment_provider_error"


def _member_payment(member: Member, created: int) -> dict[str, Any]:
    session = sp.checkout_session(
        user_id=member.user_id, pack="S", amount=500, payment_intent=sp.new_id("pi")
    )
    return sp.event("checkout.session.completed", session, created=created)


async def test_reconcile_applies_what_the_ledger_lacks_once(
    http: httpx.AsyncClient, double: StripeDouble, pay_settings: Settings, pool: asyncpg.Pool
) -> None:
    member = await sign_up(http)
    events = [_member_payment(member, ago(500 - i)) for i in range(5)]
    events.append(sp.event("customer.created", {"id": "cus_9", "object": "customer"}))
    old = _member_payment(member, ago(40 * 86400))  # before --since: not listed
    double.events = sorted([*events, old], key=lambda e: -e["created"])  # newest first
    for event in events[:2]:  # the webhook delivered these two
        await delivered(http, event)
    since = ago(86400)  # once: the clock may tick between the call and the check
    async with stripe_client(pay_settings.stripe_secret_key, double.url) as client:
        listed = await list_events(client, since)
    assert sorted(e["id"] for e in listed) == sorted(e["id"] for e in events)
    pages = [c.params for c in double.calls if c.path == "/v1/events"]
    assert len(pages) == 3 and all(p["created[gte]"] == str(since) for p in pages)
    assert [p.get("starting_after") is not None for p in pages] == [False, True, True]
    said: list[str] = []
    report = await reconcile(pool, listed, pay_settings.catalog, said.append)
    assert (report.listed, report.already, len(report.applied)) == (6, 2, 4)
    assert [a.outcome for a in report.applied] == ["granted", "granted", "granted", "ignored"]
    assert said[-1] == "6 event(s) listed, 2 already in the ledger, 4 applied, 0 failed"
    assert await balance(pool, member.user_id) == 500
    again = await reconcile(pool, listed, pay_settings.catalog, said.append)
    assert (again.already, again.applied) == (6, [])
    # A late webhook of an event reconcile applied is a duplicate.
    assert (await delivered(http, events[4]))["duplicate"] is True
    assert len(await received(pool, events[4]["id"])) == 1


async def test_rcc_stripe_reconcile_command(
    cli_env: dict[str, str], double: StripeDouble, pool: asyncpg.Pool
) -> None:
    created = await _registered(pool)
    event = sp.event(
        "checkout.session.completed",
        sp.checkout_session(user_id=created, pack="M", amount=2500, payment_intent="pi_cli_1"),
    )
    double.events = [event]
    env = {**cli_env, "STRIPE_SECRET_KEY": "sk_test_cli", "STRIPE_API_BASE": double.url}
    since = datetime.now(UTC).date().isoformat()
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "rcc.cli", "stripe", "reconcile", "--since", since],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"applied {event['id']} checkout.session.completed: granted" in run.stdout
    assert "1 event(s) listed, 0 already in the ledger, 1 applied, 0 failed" in run.stdout
    assert await balance(pool, created) == 550
    no_key = {k: v for k, v in env.items() if k != "STRIPE_SECRET_KEY"}
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "rcc.cli", "stripe", "reconcile", "--since", since],
        env=no_key,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and "STRIPE_SECRET_KEY" in refused.stderr


async def _registered(pool: asyncpg.Pool) -> str:
    from tests.helpers import funded_user

    return await funded_user(pool, 0)


def test_catalog_file_json_and_toml(tmp_path: Path) -> None:
    catalog = {
        "packs": [
            {"id": "XS", "name": "Tiny", "credits": 10, "price": 99, "currency": "eur",
             "stripe_price_id": "price_xs"},
        ],
        "plans": [
            {"id": "solo", "name": "Solo", "credits_per_month": 50, "currency": "eur",
             "monthly": {"price": 500, "stripe_price_id": "price_solo_m"},
             "annual": {"price": 4800, "stripe_price_id": "price_solo_y"}},
        ],
    }  # fmt: skip
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    env = {"RCC_DATA_DIR": str(tmp_path), "RCC_SESSION_SECRET": "x", "RCC_CATALOG_FILE": str(path)}
    loaded = load_settings(env).catalog
    assert loaded.pack("XS") is not None and loaded.plan_by_price("price_solo_y") is not None
    toml = tmp_path / "catalog.toml"
    toml.write_text(
        """
[[packs]]
id = "XS"
name = "Tiny"
credits = 10
price = 99
currency = "eur"
stripe_price_id = "price_xs"

[[plans]]
id = "solo"
name = "Solo"
credits_per_month = 50
currency = "eur"
monthly = { price = 500, stripe_price_id = "price_solo_m" }
annual = { price = 4800, stripe_price_id = "price_solo_y" }
"""
    )
    assert load_settings({**env, "RCC_CATALOG_FILE": str(toml)}).catalog == loaded
    broken = dict(catalog, packs=[dict(catalog["packs"][0], price=0, currency="EUR")])
    with pytest.raises(CatalogError, match="positive"):
        parse_catalog(json.dumps(broken).encode())
    path.write_text("{")
    with pytest.raises(SystemExit, match="RCC_CATALOG_FILE"):
        load_settings(env)
    secrets = {"STRIPE_SECRET_KEY": "sk_live_hush", "STRIPE_WEBHOOK_SECRET": "whsec_hush"}
    shown = load_settings(env | secrets | {"RCC_CATALOG_FILE": ""})
    assert shown.stripe_secret_key == "sk_live_hush"
    assert "hush" not in repr(shown) and "hush" not in str(shown)
