"""payment_intent.succeeded, as auto top-up reads it: the credit of a crossing's
off-session charge (through the same RecordPayment as a Checkout, so a payment is
credited once whichever event brings it), or the card a Checkout saved; and
payment_intent.payment_failed: a crossing's charge declined after the charger sent it."""

from __future__ import annotations

from typing import Any

from rcc.autotopup.commands import RecordLaterDecline, SaveCard
from rcc.domain.catalog import Catalog
from rcc.domain.org import ORG_METADATA
from rcc.domain.payment import Offer, PaymentFacts
from rcc.service import payment_commands as pc

Obj = dict[str, Any]
AUTO_TOPUP_KEY = "rcc_auto_topup"  # PaymentIntent metadata: the crossing it pays for


def _id(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def payment_intent_command(intent: Obj, catalog: Catalog, base: dict[str, Any]) -> pc.StripeCommand:
    """The command a succeeded PaymentIntent stands for."""
    meta = intent.get("metadata") or {}
    user_id = meta.get("rcc_user_id")
    if meta.get(AUTO_TOPUP_KEY) and user_id:
        pack = catalog.pack(meta.get("rcc_pack"))
        offer = Offer(
            kind="topup",
            product=pack.id if pack else str(meta.get("rcc_pack", "")),
            price=pack.price if pack else None,
            currency=pack.currency if pack else None,
            credits=pack.credits if pack else 0,
        )
        amount = int(intent.get("amount_received") or intent.get("amount") or 0)
        facts = PaymentFacts(
            payment_key=_id(intent) or "",
            offer=offer,
            subtotal=int(intent.get("amount") or 0),
            amount=amount,
            currency=str(intent.get("currency") or ""),
            user_id=user_id,
            org_id=meta.get(ORG_METADATA),  # h14: an org's auto top-up credits its wallet
        )
        return pc.RecordPayment(status="paid", facts=facts, **base)
    customer, method = _id(intent.get("customer")), _id(intent.get("payment_method"))
    owner = meta.get(ORG_METADATA) or user_id  # an org's Checkout saves the org's card
    if owner and customer and method and intent.get("setup_future_usage") == "off_session":
        return SaveCard(user_id=owner, customer_id=customer, payment_method=method, **base)
    return pc.NoteStripeEvent(detail="a payment intent RCC does not act on", **base)


def _decline_reason(intent: Obj) -> str:
    error = intent.get("last_payment_error")
    error = error if isinstance(error, dict) else {}
    for name in ("decline_code", "code", "message"):
        if isinstance(error.get(name), str) and error[name]:
            return str(error[name])
    return "payment_failed"


def payment_failed_command(intent: Obj, base: dict[str, Any]) -> pc.StripeCommand:
    """The command a failed PaymentIntent stands for: a crossing's decline, or a note."""
    meta = intent.get("metadata") or {}
    owner = meta.get(ORG_METADATA) or meta.get("rcc_user_id")  # an org's charge names it
    crossing, payment_intent = meta.get(AUTO_TOPUP_KEY), _id(intent)
    if not (crossing and owner and payment_intent):
        return pc.NoteStripeEvent(detail="a failed payment intent RCC did not create", **base)
    return RecordLaterDecline(
        user_id=owner,
        crossing=crossing,
        payment_intent=payment_intent,
        reason=_decline_reason(intent),
        **base,
    )
