"""Stripe webhook payloads for tests: real event shapes, signed exactly as Stripe signs.

Shapes follow Stripe's API reference (events, checkout sessions, invoices and their
line items, charges, disputes, subscriptions); `classic` is the 2024-06-20 invoice shape
(`invoice.subscription`, `invoice.payment_intent`, `line.price`), `basil` the 2025-03-31
and later one (`invoice.parent.subscription_details`, `line.pricing.price_details`).
The signature is computed here with hmac, independently of the SDK under test.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any

WEBHOOK_SECRET = "whsec_test_rcc_5f0c2d8e1b"
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_test{next(_ids):06d}{int(time.time() * 1000) % 100000:05d}"


def sign(body: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header: t=<unix time>,v1=HMAC-SHA256("<t>.<raw body>")."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def encode(event: dict[str, Any]) -> bytes:
    return json.dumps(event, indent=2).encode()  # Stripe sends pretty-printed JSON


def event(
    type_: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
    api_version: str = "2024-06-20",
) -> dict[str, Any]:
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": api_version,
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": new_id("req"), "idempotency_key": None},
        "type": type_,
    }


def checkout_session(
    *,
    user_id: str,
    mode: str = "payment",
    pack: str | None = "M",
    plan: str | None = None,
    amount: int = 2500,
    currency: str = "usd",
    payment_status: str = "paid",
    payment_intent: str | None = None,
    subscription: str | None = None,
    invoice: str | None = None,
    session_id: str | None = None,
) -> dict[str, Any]:
    metadata = {"rcc_user_id": user_id}
    if mode == "payment" and pack:
        metadata["rcc_pack"] = pack
    if mode == "subscription" and plan:
        metadata["rcc_plan"] = plan
    now = int(time.time())
    return {
        "id": session_id or new_id("cs"),
        "object": "checkout.session",
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": amount,
        "amount_total": amount,
        "automatic_tax": {"enabled": False, "liability": None, "status": None},
        "billing_address_collection": None,
        "cancel_url": "http://127.0.0.1:8000/billing/cancel",
        "client_reference_id": user_id,
        "consent": None,
        "created": now - 60,
        "currency": currency,
        "customer": new_id("cus"),
        "customer_creation": "if_required",
        "customer_details": {
            "address": {"city": None, "country": "FR", "line1": None, "postal_code": None},
            "email": "buyer@example.com",
            "name": "A Buyer",
            "phone": None,
            "tax_exempt": "none",
            "tax_ids": [],
        },
        "customer_email": None,
        "expires_at": now + 86400,
        "invoice": invoice,
        "livemode": False,
        "locale": None,
        "metadata": metadata,
        "mode": mode,
        "payment_intent": payment_intent if mode == "payment" else None,
        "payment_link": None,
        "payment_method_types": ["card"],
        "payment_status": payment_status,
        "status": "complete",
        "submit_type": None,
        "subscription": subscription,
        "success_url": "http://127.0.0.1:8000/billing/success?session_id={CHECKOUT_SESSION_ID}",
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": None,
    }


def invoice(
    *,
    user_id: str | None,
    plan: str,
    interval: str,
    price_id: str,
    amount: int,
    period_start: int,
    period_end: int,
    subscription: str,
    payment_intent: str | None,
    invoice_id: str | None = None,
    billing_reason: str = "subscription_create",
    currency: str = "usd",
    paid: bool = True,
    shape: str = "classic",
    attempt_count: int = 1,
) -> dict[str, Any]:
    metadata = {"rcc_user_id": user_id, "rcc_plan": plan} if user_id else {}
    invoice_id = invoice_id or new_id("in")
    item = new_id("si")
    line: dict[str, Any] = {
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount,
        "currency": currency,
        "description": f"1 \u00d7 {plan} (at {amount / 100:.2f} / {interval})",
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "livemode": False,
        "metadata": metadata,
        "period": {"end": period_end, "start": period_start},
        "quantity": 1,
    }
    body: dict[str, Any] = {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "FR",
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount,
        "attempt_count": attempt_count,
        "attempted": True,
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": period_start,
        "currency": currency,
        "customer": new_id("cus"),
        "customer_email": "buyer@example.com",
        "hosted_invoice_url": f"https://invoice.stripe.com/i/{invoice_id}",
        "lines": {
            "object": "list",
            "data": [line],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "next_payment_attempt": None if paid else period_start + 3 * 86400,
        "number": f"RCC-{invoice_id[-6:]}",
        "period_end": period_start,
        "period_start": period_start,
        "status": "paid" if paid else "open",
        "status_transitions": {"paid_at": period_start if paid else None},
        "subtotal": amount,
        "total": amount,
    }
    if shape == "classic":
        line.update(
            type="subscription",
            subscription=subscription,
            subscription_item=item,
            proration=False,
            plan={
                "id": price_id,
                "object": "plan",
                "active": True,
                "amount": amount,
                "currency": currency,
                "interval": interval,
                "interval_count": 1,
                "product": "prod_rcc",
            },
            price={
                "id": price_id,
                "object": "price",
                "currency": currency,
                "product": "prod_rcc",
                "recurring": {"interval": interval, "interval_count": 1, "usage_type": "licensed"},
                "type": "recurring",
                "unit_amount": amount,
            },
        )
        body.update(
            subscription=subscription,
            subscription_details={"metadata": metadata},
            payment_intent=payment_intent,
            charge=new_id("ch") if paid else None,
            paid=paid,
        )
    else:
        line.update(
            parent={
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": subscription,
                    "subscription_item": item,
                },
                "type": "subscription_item_details",
            },
            pricing={
                "price_details": {"price": price_id, "product": "prod_rcc"},
                "type": "price_details",
                "unit_amount_decimal": str(amount),
            },
        )
        body["parent"] = {
            "quote_details": None,
            "subscription_details": {"metadata": metadata, "subscription": subscription},
            "type": "subscription_details",
        }
    return body


def invoice_payment(
    *, invoice_id: str, payment_intent: str, amount: int, currency: str = "usd"
) -> dict[str, Any]:
    """An InvoicePayment (API 2025-03-31 and later), as in `invoice_payment.paid`: the
    shape of the example in Stripe's API reference (Invoice Payments, retrieve)."""
    now = int(time.time())
    return {
        "id": new_id("inpay"),
        "object": "invoice_payment",
        "amount_paid": amount,
        "amount_requested": amount,
        "created": now,
        "currency": currency,
        "invoice": invoice_id,
        "is_default": True,
        "livemode": False,
        "payment": {"type": "payment_intent", "payment_intent": payment_intent},
        "status": "paid",
        "status_transitions": {"canceled_at": None, "paid_at": now},
    }


def charge(
    *, payment_intent: str, amount: int, amount_refunded: int, currency: str = "usd"
) -> dict[str, Any]:
    """A charge in the current shape (no `invoice`: since 2025-03-31 charges do not name
    one; the classic shape named it, and RCC never read it)."""
    charge_id = new_id("ch")
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "balance_transaction": new_id("txn"),
        "captured": True,
        "created": int(time.time()) - 3600,
        "currency": currency,
        "customer": new_id("cus"),
        "disputed": False,
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": payment_intent,
        "payment_method": new_id("pm"),
        "refunded": amount_refunded >= amount,
        "refunds": {
            "object": "list",
            "data": [
                {
                    "id": new_id("re"),
                    "object": "refund",
                    "amount": amount_refunded,
                    "charge": charge_id,
                    "currency": currency,
                    "payment_intent": payment_intent,
                    "reason": "requested_by_customer",
                    "status": "succeeded",
                }
            ],
            "has_more": False,
            "total_count": 1,
            "url": f"/v1/charges/{charge_id}/refunds",
        },
        "status": "succeeded",
    }


def dispute(
    *, payment_intent: str, amount: int, currency: str = "usd", reason: str = "fraudulent"
) -> dict[str, Any]:
    return {
        "id": new_id("dp"),
        "object": "dispute",
        "amount": amount,
        "balance_transactions": [],
        "charge": new_id("ch"),
        "created": int(time.time()),
        "currency": currency,
        "evidence_details": {
            "due_by": int(time.time()) + 7 * 86400,
            "has_evidence": False,
            "past_due": False,
            "submission_count": 0,
        },
        "is_charge_refundable": False,
        "livemode": False,
        "metadata": {},
        "payment_intent": payment_intent,
        "reason": reason,
        "status": "needs_response",
    }


def subscription(
    *, subscription_id: str, user_id: str, plan: str, price_id: str, ended_at: int
) -> dict[str, Any]:
    return {
        "id": subscription_id,
        "object": "subscription",
        "cancel_at": None,
        "cancel_at_period_end": False,
        "canceled_at": ended_at,
        "cancellation_details": {
            "comment": None,
            "feedback": None,
            "reason": "cancellation_requested",
        },
        "created": ended_at - 86400 * 30,
        "customer": new_id("cus"),
        "ended_at": ended_at,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": new_id("si"),
                    "object": "subscription_item",
                    "price": {"id": price_id, "object": "price", "type": "recurring"},
                    "quantity": 1,
                }
            ],
            "has_more": False,
        },
        "livemode": False,
        "metadata": {"rcc_user_id": user_id, "rcc_plan": plan},
        "status": "canceled",
    }
