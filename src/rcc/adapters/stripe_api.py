"""Stripe's API through the official SDK's async methods: Checkout Sessions and events.

One StripeClient per use, on its own aiohttp session that is closed afterwards (no
global `stripe.api_key`, no session outliving its event loop). `STRIPE_API_BASE` points
it at a Stripe double in tests or at stripe-mock.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import msgspec
import stripe

NETWORK_RETRIES = 2  # the SDK retries connection errors and 5xx with the same idempotency key


class CheckoutSession(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    session_id: str


@contextlib.asynccontextmanager
async def stripe_client(secret_key: str, api_base: str) -> AsyncIterator[stripe.StripeClient]:
    """A StripeClient on its own HTTP session, closed when the block ends."""
    http = stripe.AIOHTTPClient()
    client = stripe.StripeClient(
        secret_key,
        base_addresses={"api": api_base},
        http_client=http,
        max_network_retries=NETWORK_RETRIES,
    )
    try:
        yield client
    finally:
        await http.close_async()  # type: ignore[no-untyped-call]


async def create_checkout_session(
    client: stripe.StripeClient, params: dict[str, Any], idempotency_key: str
) -> CheckoutSession:
    """POST /v1/checkout/sessions with an idempotency key; the session's url and id."""
    session = await client.v1.checkout.sessions.create_async(
        params=cast(Any, params), options={"idempotency_key": idempotency_key}
    )
    return CheckoutSession(url=str(session.url or ""), session_id=str(session.id))


async def list_events(client: stripe.StripeClient, since: int) -> list[dict[str, Any]]:
    """Every event created at or after `since` (epoch s), following Stripe's pages."""
    page = await client.v1.events.list_async(params={"created": {"gte": since}, "limit": 100})
    found: list[dict[str, Any]] = []
    async for event in page.auto_paging_iter():
        found.append(event.to_dict(for_json=True))
    return found
