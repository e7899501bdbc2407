"""Stripe calls of auto top-up, through the official SDK: an off-session PaymentIntent
per crossing, and a customer portal session."""

from __future__ import annotations

from typing import Any, cast

import msgspec
import stripe


class Charged(msgspec.Struct, frozen=True, kw_only=True):
    payment_intent: str
    status: str  # Stripe's: succeeded, processing, requires_action...


class Declined(msgspec.Struct, frozen=True, kw_only=True):
    reason: str
    payment_intent: str | None = None


async def charge_off_session(
    client: stripe.StripeClient, params: dict[str, Any], idempotency_key: str
) -> Charged | Declined:
    """POST /v1/payment_intents confirmed off-session; a card error is a Declined."""
    try:
        intent = await client.v1.payment_intents.create_async(
            params=cast(Any, params), options={"idempotency_key": idempotency_key}
        )
    except stripe.CardError as error:
        found = getattr(error.error, "payment_intent", None) if error.error else None
        code = (error.error.decline_code or error.error.code) if error.error else None
        return Declined(
            reason=str(code or error.user_message or "card_declined"),
            payment_intent=str(found["id"]) if found else None,
        )
    return Charged(payment_intent=str(intent.id), status=str(intent.status))


async def portal_session(
    client: stripe.StripeClient, customer: str, return_url: str, idempotency_key: str
) -> str:
    """POST /v1/billing_portal/sessions: the URL of the customer's portal session."""
    session = await client.v1.billing_portal.sessions.create_async(
        params={"customer": customer, "return_url": return_url},
        options={"idempotency_key": idempotency_key},
    )
    return str(session.url)
