"""Stripe's events, read into payment commands (the same for webhooks and reconcile).

Only the event's id, type, creation time and data object are read: redeliveries differ
in delivery details (`pending_webhooks`, `request`), never in those. Objects are read
defensively, accepting both the classic shapes (`invoice.subscription`,
`invoice.payment_intent`, `line.price`) and the newer ones (`invoice.parent.
subscription_details`, `invoice.payments`, `line.pricing.price_details`, and
`invoice_payment.paid`, which alone ties an invoice to its PaymentIntent and charge).
The event's `api_version` says which shapes it carries: `version_problem` refuses the
versions RCC was not built for.
"""

from __future__ import annotations

from typing import Any

import msgspec
import stripe

from rcc.autotopup.stripe_events import payment_failed_command, payment_intent_command
from rcc.domain.catalog import MONTHS, Catalog
from rcc.domain.org import ORG_METADATA
from rcc.domain.payment import Offer, PaymentFacts
from rcc.service import payment_commands as pc

Obj = dict[str, Any]


class StripeEventData(msgspec.Struct, kw_only=True):
    object: Obj


class StripeEvent(msgspec.Struct, kw_only=True):
    """The parts of a Stripe event RCC reads."""

    id: str
    type: str
    created: int = 0
    api_version: str | None = None
    data: StripeEventData


# The API versions whose shapes this module reads, by their date: from the classic
# 2024-06-20 up to the version the pinned SDK speaks (see docs/PAYMENTS.md). Events
# rendered in a newer version may have moved fields again; older ones predate shapes
# we rely on. Set the webhook endpoint's version to SDK_API_VERSION.
OLDEST_API_VERSION = "2024-06-20"
SDK_API_VERSION = stripe.api_version


def version_problem(api_version: str | None) -> str | None:
    """Why events of this API version are not read here, or None when they are."""
    newest = SDK_API_VERSION.split(".", 1)[0]
    date = (api_version or "").split(".", 1)[0]
    if OLDEST_API_VERSION <= date <= newest and len(date) == len("YYYY-MM-DD"):
        return None
    return (
        f"events of API version {api_version!r} are not read here; set the webhook "
        f"endpoint to API version {SDK_API_VERSION} (versions {OLDEST_API_VERSION} to "
        f"{newest} are read)"
    )


class NotAnEvent(ValueError):
    """The body is not a Stripe event."""


def parse_event(raw: bytes | Obj) -> StripeEvent:
    """A Stripe event from a webhook body (bytes) or an events-API item (dict)."""
    try:
        if isinstance(raw, bytes):
            return msgspec.json.decode(raw, type=StripeEvent)
        return msgspec.convert(raw, StripeEvent)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise NotAnEvent(str(error)) from None


def _obj(value: Any) -> Obj:
    return value if isinstance(value, dict) else {}


def _id(value: Any) -> str | None:
    """An id, whether Stripe sent the id or the expanded object."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _metadata(*sources: Any) -> dict[str, str]:
    found: dict[str, str] = {}
    for source in sources:
        for name, value in _obj(source).items():
            if isinstance(value, str) and value and name not in found:
                found[name] = value
    return found


def command_for(event: StripeEvent, catalog: Catalog) -> pc.StripeCommand:
    """The payment command a Stripe event stands for."""
    obj = event.data.object
    base: dict[str, Any] = {
        "event_id": event.id,
        "event_type": event.type,
        "created": event.created,
        "object_id": _id(obj) or "",
    }
    match event.type:
        case (
            "checkout.session.completed"
            | "checkout.session.async_payment_succeeded"
            | "checkout.session.async_payment_failed"
        ):
            return _checkout(event.type, obj, catalog, base)
        case "invoice.paid" | "invoice.payment_failed":
            return _invoice(event.type, obj, catalog, base)
        case "invoice_payment.paid":
            return _invoice_payment(obj, base)
        case "charge.refunded":
            return pc.ReverseCharge(
                kind="refund",
                payment_key=_id(obj.get("payment_intent")) or _id(obj) or "",
                charge_id=_id(obj) or "",
                amount=_int(obj.get("amount_refunded")),
                currency=str(obj.get("currency") or ""),
                reason="refunded",
                **base,
            )
        case "charge.dispute.created":
            charge = _id(obj.get("charge")) or ""
            return pc.ReverseCharge(
                kind="dispute",
                payment_key=_id(obj.get("payment_intent")) or charge,
                charge_id=charge,
                dispute_id=_id(obj) or "",
                amount=_int(obj.get("amount")),
                currency=str(obj.get("currency") or ""),
                reason=str(obj.get("reason") or ""),
                **base,
            )
        case "payment_intent.succeeded":  # auto top-up (h7)
            return payment_intent_command(obj, catalog, base)
        case "payment_intent.payment_failed":  # a later auto top-up decline (h14)
            return payment_failed_command(obj, base)
        case "customer.subscription.deleted":
            ended = obj.get("ended_at") or obj.get("canceled_at") or event.created
            return pc.EndSubscription(
                subscription_id=_id(obj) or "", ended_at=_int(ended, event.created), **base
            )
    return pc.NoteStripeEvent(detail=f"{event.type} is not one RCC acts on", **base)


def _invoice_payment(paid: Obj, base: dict[str, Any]) -> pc.StripeCommand:
    """An InvoicePayment: `payment` is a PaymentIntent, a charge (or out of band)."""
    invoice_id = _id(paid.get("invoice"))
    payment = _obj(paid.get("payment"))
    aliases = [
        found
        for found in (_id(payment.get("payment_intent")), _id(payment.get("charge")))
        if found and found != invoice_id
    ]
    if not invoice_id or not aliases:
        return pc.NoteStripeEvent(detail="an invoice payment without a Stripe payment", **base)
    return pc.LinkInvoicePayment(
        invoice_id=invoice_id, aliases=aliases, invoice_payment_id=_id(paid) or "", **base
    )


def _checkout(kind: str, session: Obj, catalog: Catalog, base: dict[str, Any]) -> pc.StripeCommand:
    meta = _metadata(session.get("metadata"))
    user_id = meta.get("rcc_user_id") or _str(session.get("client_reference_id"))
    mode = session.get("mode")
    if mode == "subscription":
        if kind != "checkout.session.completed":
            return pc.NoteStripeEvent(detail="plans are credited by their invoices", **base)
        return pc.LinkSubscription(
            subscription_id=_id(session.get("subscription")) or "",
            user_id=user_id,
            plan=meta.get("rcc_plan", ""),
            org_id=meta.get(ORG_METADATA),
            **base,
        )
    if mode != "payment":
        return pc.NoteStripeEvent(detail=f"checkout mode {mode!r} buys nothing", **base)
    pack = catalog.pack(meta.get("rcc_pack"))
    offer = Offer(
        kind="topup",
        product=pack.id if pack else meta.get("rcc_pack", ""),
        price=pack.price if pack else None,
        currency=pack.currency if pack else None,
        credits=pack.credits if pack else 0,
    )
    session_id = _id(session) or ""
    facts = PaymentFacts(
        payment_key=_id(session.get("payment_intent")) or session_id,
        offer=offer,
        subtotal=_int(session.get("amount_subtotal"), _int(session.get("amount_total"))),
        amount=_int(session.get("amount_total")),
        currency=str(session.get("currency") or ""),
        user_id=user_id,
        session_id=session_id,
        org_id=meta.get(ORG_METADATA),
    )
    if kind == "checkout.session.async_payment_failed":
        return pc.RecordPayment(
            status="failed", facts=facts, reason="the delayed payment failed", **base
        )
    paid = kind == "checkout.session.async_payment_succeeded" or session.get("payment_status") in {
        "paid",
        "no_payment_required",
    }
    return pc.RecordPayment(status="paid" if paid else "pending", facts=facts, **base)


def _subscription_line(invoice: Obj) -> Obj:
    lines = _obj(invoice.get("lines")).get("data")
    items = [line for line in lines if isinstance(line, dict)] if isinstance(lines, list) else []
    for line in items:
        parent = _obj(line.get("parent"))
        if line.get("type") == "subscription" or parent.get("type") == "subscription_item_details":
            return line
    return items[0] if items else {}


def _price_id(line: Obj) -> str | None:
    pricing = _obj(_obj(line.get("pricing")).get("price_details"))
    return _id(line.get("price")) or _id(pricing.get("price")) or _id(line.get("plan"))


def _line_interval(line: Obj) -> str | None:
    recurring = _obj(_obj(line.get("price")).get("recurring")) or _obj(line.get("plan"))
    interval = recurring.get("interval")
    return interval if interval in MONTHS else None


def _payment_intent(invoice: Obj) -> str | None:
    if found := _id(invoice.get("payment_intent")):
        return found
    payments = _obj(invoice.get("payments")).get("data")
    for item in payments if isinstance(payments, list) else []:
        payment = _obj(_obj(item).get("payment"))
        if found := _id(payment.get("payment_intent")):
            return found
    return None


def _invoice(kind: str, invoice: Obj, catalog: Catalog, base: dict[str, Any]) -> pc.StripeCommand:
    details = _obj(_obj(invoice.get("parent")).get("subscription_details"))
    subscription_id = _id(invoice.get("subscription")) or _id(details.get("subscription"))
    if not subscription_id:
        return pc.NoteStripeEvent(detail="not a subscription invoice", **base)
    if kind == "invoice.paid" and not _int(invoice.get("subtotal")):
        return pc.NoteStripeEvent(detail="a zero-amount invoice (a trial) buys nothing", **base)
    line = _subscription_line(invoice)
    meta = _metadata(
        details.get("metadata"),
        _obj(invoice.get("subscription_details")).get("metadata"),
        line.get("metadata"),
    )
    found = catalog.plan_by_price(_price_id(line))
    plan, interval = found if found else (catalog.plan(meta.get("rcc_plan")), _line_interval(line))
    price = plan.price_for(interval) if plan and interval else None
    months = MONTHS.get(interval or "", 0)
    offer = Offer(
        kind="subscription",
        product=plan.id if plan else meta.get("rcc_plan", ""),
        interval=interval,
        price=price.price if price else None,
        currency=plan.currency if plan and price else None,
        credits_per_month=plan.credits_per_month if plan else 0,
        months=months,
        credits=plan.credits_per_month * months if plan else 0,
    )
    period = _obj(line.get("period"))
    invoice_id = _id(invoice) or ""
    facts = PaymentFacts(
        payment_key=_payment_intent(invoice) or invoice_id,
        offer=offer,
        subtotal=_int(invoice.get("subtotal"), _int(invoice.get("amount_due"))),
        amount=_int(invoice.get("amount_paid" if kind == "invoice.paid" else "amount_due")),
        currency=str(invoice.get("currency") or ""),
        user_id=meta.get("rcc_user_id"),
        org_id=meta.get(ORG_METADATA),
        subscription_id=subscription_id,
        invoice_id=invoice_id,
        period_start=_int(period.get("start"), _int(invoice.get("period_start"))) or None,
        period_end=_int(period.get("end"), _int(invoice.get("period_end"))) or None,
    )
    if kind == "invoice.payment_failed":
        attempt = _int(invoice.get("attempt_count"), 1)
        reason = f"payment attempt {attempt} failed"
        if error := _str(_obj(invoice.get("last_finalization_error")).get("message")):
            reason += f": {error}"
        return pc.RecordPayment(status="failed", facts=facts, reason=reason, **base)
    return pc.RecordPayment(status="paid", facts=facts, **base)
