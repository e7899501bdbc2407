"""Stripe Customers through the official SDK: the one an organisation pays as."""

from __future__ import annotations

import stripe


async def create_customer(
    client: stripe.StripeClient, name: str, metadata: dict[str, str], idempotency_key: str
) -> str:
    """POST /v1/customers with an idempotency key: the new (or replayed) customer's id."""
    customer = await client.v1.customers.create_async(
        params={"name": name, "metadata": metadata},
        options={"idempotency_key": idempotency_key},
    )
    return str(customer.id)
