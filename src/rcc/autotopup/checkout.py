"""Checkout for a user who opted in to auto top-up: it also saves the card."""

from __future__ import annotations

from typing import Any

from rcc.domain.org import ORG_METADATA


def saving_the_card(
    params: dict[str, Any], user_id: str, org_id: str | None = None
) -> dict[str, Any]:
    """Checkout parameters that also keep the card for off-session payments
    (`setup_future_usage`); the PaymentIntent names its owner so its
    payment_intent.succeeded can record the card. A user's card is kept on a Stripe
    customer made for the purpose; an org's Checkout names its own `customer` already
    (and Stripe refuses `customer_creation` next to it)."""
    metadata = {"rcc_user_id": user_id, **({ORG_METADATA: org_id} if org_id else {})}
    created = {} if "customer" in params else {"customer_creation": "always"}
    return {
        **params,
        **created,
        "payment_intent_data": {"setup_future_usage": "off_session", "metadata": metadata},
    }
