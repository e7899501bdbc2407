"""An organisation pays as its own Stripe Customer (issue 13): its Checkout sessions
name that customer (created on the org's first purchase), and its owner and admins
open Stripe's customer portal for it: POST /orgs/{id}/billing/portal."""

from __future__ import annotations

import uuid
from typing import Any

import stripe
from litestar import Request, Router, post
from litestar.datastructures import State
from litestar.params import FromPath

from portal.errors import ApiError
from portal.idempotency import IdempotencyKey
from portal.identity import signed_in_user
from portal.responses import SIGNED_IN, errors
from portal.routes.auto_topup import (
    PortalSession,
    open_portal,
    payments_configured,
    with_card_saving,
)
from portal.routes.jobs import me
from portal.routes.orgs import managed_org
from rcc.config import Settings
from rcc.domain import org as orgs
from rcc.domain.errors import DomainError
from rcc.service.org_customers import org_customer


async def paying_as_org(
    state: State, params: dict[str, Any], org_id: str | None, buyer: str
) -> dict[str, Any]:
    """Checkout parameters naming the org's Stripe Customer as `customer` (created on
    the org's first purchase); unchanged for a personal purchase."""
    if org_id is None:
        return params
    settings: Settings = state.settings
    payments_configured(settings)
    org = await managed_org(state, org_id, buyer)
    try:
        customer = await org_customer(state.pool, settings, org, buyer)
    except stripe.StripeError as error:
        raise ApiError(502, "payment_provider_error", str(error.user_message or error)) from None
    if isinstance(customer, DomainError):
        raise ApiError(404, "not_found", customer.detail)
    named = {**params, "customer": customer}
    if params.get("mode") != "payment":
        return named
    # The org's first top-up after its admins opted in to auto top-up saves its card.
    return await with_card_saving(state.pool, named, buyer, org_id)


@post(
    "/orgs/{org_id:str}/billing/portal",
    status_code=200,
    responses=errors(400, *SIGNED_IN, 404, 409, 502, 503),
)
async def org_billing_portal(
    org_id: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> PortalSession:
    """A Stripe customer portal session for the organisation (owner and admins): `{url}`."""
    who = await me(request)
    assert who.user_id is not None
    settings: Settings = state.settings
    org: orgs.OrgState = await managed_org(state, org_id, who.user_id)
    if not org.stripe_customer:
        raise ApiError(409, "no_stripe_customer", "the organisation has not bought anything yet")
    payments_configured(settings)
    key = f"rcc-portal:{org_id}:{who.user_id}:{idempotency_key or uuid.uuid4().hex}"
    return await open_portal(settings, org.stripe_customer, f"/app/orgs/{org_id}/credits", key)


router = Router(
    path="/",
    route_handlers=[org_billing_portal],
    guards=[signed_in_user],
    tags=["organisations"],
)
