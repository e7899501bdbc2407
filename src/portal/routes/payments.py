"""Payments: GET /catalog, POST /checkout/topup and /checkout/subscription, and
POST /webhooks/stripe (Stripe's events, signed; the source of truth for money)."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any, Literal

import msgspec
import stripe
from litestar import Request, Response, Router, get, post
from litestar.datastructures import State
from litestar.params import HeaderParameter, JSONBody

from portal.blocking import not_blocked
from portal.errors import ApiError
from portal.identity import signed_in_user
from portal.responses import BODY, SIGNED_IN, errors
from portal.routes.auth import _limit
from portal.routes.auto_topup import with_card_saving
from portal.routes.jobs import me
from portal.routes.org_billing import paying_as_org
from portal.routes.orgs import buying_org
from portal.schemas import Strict
from portal.topup_bounds import within_topup_bounds
from rcc.adapters.stripe_api import CheckoutSession
from rcc.adapters.stripe_events import NotAnEvent, parse_event, version_problem
from rcc.config import Settings
from rcc.domain.catalog import Catalog
from rcc.domain.prices import JOB_PRICES_RCC
from rcc.policy.grants import lot_policy
from rcc.service.checkout import open_checkout, subscription_params, topup_params
from rcc.service.org_payments import for_org
from rcc.service.stripe_inbox import NotApplied, apply_event

log = logging.getLogger("portal.payments")
MAX_KEY_LENGTH = 180  # Stripe takes keys up to 255 characters; ours adds ~70
CHECKOUT = errors(*BODY, *SIGNED_IN, 409, 422, 502, 503)


class PackView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    credits: int
    price: int  # minor units
    currency: str


class PlanPriceView(msgspec.Struct, frozen=True, kw_only=True):
    price: int  # minor units, for the whole interval
    credits: int  # credited over the interval, month by month


class PlanView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    credits_per_month: int
    currency: str
    month: PlanPriceView
    year: PlanPriceView  # paid once a year, credited monthly


class JobPriceView(msgspec.Struct, frozen=True, kw_only=True):
    type: str  # the `type` of POST /jobs
    rcc: int  # reserved when the job is created, released if it fails


class CatalogView(msgspec.Struct, frozen=True, kw_only=True):
    packs: list[PackView]
    plans: list[PlanView]
    job_prices: list[JobPriceView]  # what credits buy, from the one price table


class TopupCheckout(Strict, frozen=True, kw_only=True):
    pack: str
    wallet: str | None = None  # h5: `org:<id>` buys for an organisation (owner, admins)


class SubscriptionCheckout(Strict, frozen=True, kw_only=True):
    plan: str
    interval: Literal["month", "year"]
    wallet: str | None = None  # h5: `org:<id>` subscribes an organisation (owner, admins)


def catalog_view(catalog: Catalog) -> CatalogView:
    return CatalogView(
        packs=[
            PackView(id=p.id, name=p.name, credits=p.credits, price=p.price, currency=p.currency)
            for p in catalog.packs
        ],
        plans=[
            PlanView(
                id=p.id,
                name=p.name,
                credits_per_month=p.credits_per_month,
                currency=p.currency,
                month=PlanPriceView(price=p.monthly.price, credits=p.credits_per_month),
                year=PlanPriceView(price=p.annual.price, credits=12 * p.credits_per_month),
            )
            for p in catalog.plans
        ],
        job_prices=[JobPriceView(type=t, rcc=rcc) for t, rcc in JOB_PRICES_RCC.items()],
    )


@get("/catalog")
async def get_catalog(state: State) -> CatalogView:
    """The packs and plans on sale and what each job type costs (public)."""
    settings: Settings = state.settings
    return catalog_view(settings.catalog)


async def _checkout(
    settings: Settings, params: dict[str, Any], key: str
) -> Response[CheckoutSession]:
    if not settings.stripe_secret_key:
        raise ApiError(503, "payments_not_configured", "STRIPE_SECRET_KEY is not set")
    try:
        session = await open_checkout(settings, params, key)
    except stripe.IdempotencyError as error:
        raise ApiError(409, "idempotency_key_reused", str(error.user_message or error)) from None
    except stripe.StripeError as error:
        log.warning("stripe refused a checkout session: %s", error)
        detail = str(error.user_message or "the payment provider did not answer")
        raise ApiError(502, "payment_provider_error", detail) from None
    return Response(session, status_code=200)


def _request_key(user_id: str, kind: str, header: str | None) -> str:
    """Stripe's idempotency key: one per request, or the client's own for its retries."""
    return f"rcc-checkout:{user_id}:{kind}:{header or uuid.uuid4().hex}"


IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(name="Idempotency-Key", required=False, max_length=MAX_KEY_LENGTH),
]


@post("/checkout/topup", status_code=200, guards=[signed_in_user, not_blocked], responses=CHECKOUT)
async def checkout_topup(
    data: JSONBody[TopupCheckout],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[CheckoutSession]:
    """A Stripe Checkout Session for a pack: `{url, session_id}`; send the user to `url`."""
    who = await me(request)
    assert who.user_id is not None
    settings: Settings = state.settings
    pack = settings.catalog.pack(data.pack)
    if pack is None:
        known = [p.id for p in settings.catalog.packs]
        raise ApiError(422, "unknown_pack", f"pack must be one of {known}")
    org_id = await buying_org(state, data.wallet, who.user_id)
    await within_topup_bounds(state.pool, pack, who.user_id, org_id)  # h13: topup.* policies
    params = for_org(topup_params(settings.public_url, who.user_id, pack), org_id)
    params = await paying_as_org(state, params, org_id, who.user_id)  # h14: the org's customer
    if org_id is None:  # auto top-up saves the buyer's own card, not for an org
        params = await with_card_saving(state.pool, params, who.user_id)  # h7
    return await _checkout(settings, params, _request_key(who.user_id, "topup", idempotency_key))


@post(
    "/checkout/subscription",
    status_code=200,
    guards=[signed_in_user, not_blocked],  # h6: blocked accounts cannot pay
    responses=CHECKOUT,
)
async def checkout_subscription(
    data: JSONBody[SubscriptionCheckout],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[CheckoutSession]:
    """A Stripe Checkout Session for a plan, billed monthly or yearly: `{url, session_id}`."""
    who = await me(request)
    assert who.user_id is not None
    settings: Settings = state.settings
    plan = settings.catalog.plan(data.plan)
    if plan is None:
        known = [p.id for p in settings.catalog.plans]
        raise ApiError(422, "unknown_plan", f"plan must be one of {known}")
    org_id = await buying_org(state, data.wallet, who.user_id)
    plain = subscription_params(settings.public_url, who.user_id, plan, data.interval)
    params = for_org(plain, org_id)
    params = await paying_as_org(state, params, org_id, who.user_id)  # h14: the org's customer
    key = _request_key(who.user_id, "subscription", idempotency_key)
    return await _checkout(settings, params, key)


@post("/webhooks/stripe", status_code=200, responses=errors(*BODY, 429, 503))
async def stripe_webhook(
    state: State,
    request: Request[Any, Any, Any],
    stripe_signature: Annotated[
        str | None, HeaderParameter(name="Stripe-Signature", required=False)
    ] = None,
) -> Response[dict[str, Any]]:
    """Stripe's events. The signature is checked over the raw body (400 and no effect when
    it is missing, wrong or stale); each event id takes effect at most once."""
    settings: Settings = state.settings
    await _limit(state, request, "webhook", settings.rate_limits.webhook_per_min)
    if not settings.stripe_webhook_secret:
        raise ApiError(503, "webhooks_not_configured", "STRIPE_WEBHOOK_SECRET is not set")
    raw = await request.body()
    try:
        stripe.WebhookSignature.verify_header(
            raw, stripe_signature, settings.stripe_webhook_secret, stripe.Webhook.DEFAULT_TOLERANCE
        )
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        raise ApiError(400, "bad_signature", "missing, wrong or stale Stripe-Signature") from None
    try:
        event = parse_event(raw)
    except NotAnEvent as error:
        raise ApiError(400, "invalid_event", f"not a Stripe event: {error}") from None
    if problem := version_problem(event.api_version):
        # Misread shapes move money wrongly; refused, Stripe retries for three days,
        # and `rcc stripe reconcile` applies the events once the endpoint is set right.
        log.warning("stripe event %s refused: %s", event.id, problem)
        raise ApiError(400, "unsupported_api_version", problem)
    try:
        async with state.pool.acquire() as conn:
            lots = await lot_policy(conn, settings)  # h6: lots.topup_days is a policy
        applied = await apply_event(state.pool, event, settings.catalog, via="webhook", lots=lots)
    except NotApplied as error:
        log.warning("stripe event not applied, Stripe will retry: %s", error)
        raise ApiError(503, "retry_later", str(error)) from None
    body = {
        "received": True,
        "event_id": applied.event_id,
        "type": applied.event_type,
        "outcome": applied.outcome,
        "duplicate": applied.duplicate,
    }
    return Response(body, status_code=200)


router = Router(
    path="/",
    route_handlers=[get_catalog, checkout_topup, checkout_subscription, stripe_webhook],
    tags=["payments"],
)
