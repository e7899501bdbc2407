"""Checkout for a user who opted in to auto top-up: it also saves the card."""

from __future__ import annotations

from typing import Any


def saving_the_card(params: dict[str, Any], user_id: str) -> dict[str, Any]:
    """Checkout parameters that also keep the card for off-session payments
    (`setup_future_usage`) on a Stripe customer made for the purpose; the PaymentIntent
    names its user so its payment_intent.succeeded can record the card."""
    return {
        **params,
        "customer_creation": "always",
        "payment_intent_data": {
            "setup_future_usage": "off_session",
            "metadata": {"rcc_user_id": user_id},
        },
    }
