"""Stripe Checkout for packs and plans: the exact session parameters, and creating one.

Only parameters of Stripe's long-stable Checkout API are used. The user id rides along
three ways (client_reference_id, the session's metadata and, for plans, the
subscription's metadata via subscription_data), so every later event names its user.
"""

from __future__ import annotations

from typing import Any

from rcc.adapters.stripe_api import CheckoutSession, create_checkout_session, stripe_client
from rcc.config import Settings
from rcc.domain.catalog import Pack, Plan


def _urls(public_url: str) -> dict[str, str]:
    return {
        # Stripe replaces {CHECKOUT_SESSION_ID} with the session's id on redirect.
        "success_url": f"{public_url}/billing/success?session_id={{CHECKOUT_SESSION_ID}}",
        "cancel_url": f"{public_url}/billing/cancel",
    }


def topup_params(public_url: str, user_id: str, pack: Pack) -> dict[str, Any]:
    """A one-off payment for a pack."""
    return {
        "mode": "payment",
        "line_items": [{"price": pack.stripe_price_id, "quantity": 1}],
        "client_reference_id": user_id,
        "metadata": {"rcc_user_id": user_id, "rcc_pack": pack.id},
        **_urls(public_url),
    }


def subscription_params(public_url: str, user_id: str, plan: Plan, interval: str) -> dict[str, Any]:
    """A subscription to a plan, billed monthly or yearly."""
    price = plan.price_for(interval)
    assert price is not None, interval
    metadata = {"rcc_user_id": user_id, "rcc_plan": plan.id}
    return {
        "mode": "subscription",
        "line_items": [{"price": price.stripe_price_id, "quantity": 1}],
        "client_reference_id": user_id,
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
        **_urls(public_url),
    }


async def open_checkout(
    settings: Settings, params: dict[str, Any], idempotency_key: str
) -> CheckoutSession:
    """Create the Checkout Session at Stripe (raises stripe.StripeError when Stripe refuses)."""
    async with stripe_client(settings.stripe_secret_key, settings.stripe_api_base) as client:
        return await create_checkout_session(client, params, idempotency_key)
