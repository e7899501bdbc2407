"""Auto top-up and the Stripe customer portal: GET and PUT /me/auto-topup, POST
/billing/portal (CONTRACT "Plans, policies, billing states, webhooks")."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import msgspec
import stripe
from litestar import Request, Response, Router, get, post, put
from litestar.datastructures import State
from litestar.params import JSONBody

from portal.errors import ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import signed_in_user
from portal.responses import BODY, SIGNED_IN, errors
from portal.routes.jobs import me
from portal.schemas import Strict
from portal.topup_bounds import within_topup_bounds
from rcc.adapters.stripe_api import stripe_client
from rcc.adapters.stripe_autotopup import portal_session
from rcc.autotopup import store
from rcc.autotopup.checkout import saving_the_card
from rcc.autotopup.commands import ConfigureAutoTopup
from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.service.bus import execute

MAX_THRESHOLD_RCC = 10**9


class AutoTopupBody(Strict, frozen=True, kw_only=True):
    enabled: bool
    threshold_rcc: Annotated[int, msgspec.Meta(ge=1, le=MAX_THRESHOLD_RCC)]
    pack: str


class AutoTopupView(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool
    threshold_rcc: int
    pack: str
    card_saved: bool  # a Checkout kept a card for off-session payments
    declines_in_a_row: int


class PortalSession(msgspec.Struct, frozen=True, kw_only=True):
    url: str


def payments_configured(settings: Settings) -> None:
    """503 payments_not_configured unless this server has a Stripe key."""
    if not settings.stripe_secret_key:
        raise ApiError(503, "payments_not_configured", "payments are not set up on this server")


async def open_portal(
    settings: Settings, customer: str, return_path: str, idempotency_key: str
) -> PortalSession:
    """A Stripe customer portal session for `customer` that returns to `return_path` of
    the app: the user's and an organisation's portal routes both open theirs here (502
    when Stripe refuses)."""
    try:
        async with stripe_client(settings.stripe_secret_key, settings.stripe_api_base) as client:
            url = await portal_session(
                client, customer, f"{settings.public_url}{return_path}", idempotency_key
            )
    except stripe.StripeError as error:
        raise ApiError(502, "payment_provider_error", str(error.user_message or error)) from None
    return PortalSession(url=url)


async def with_card_saving(
    pool: asyncpg.Pool, params: dict[str, Any], user_id: str, org_id: str | None = None
) -> dict[str, Any]:
    """Top-up Checkout parameters, saving the card when the wallet's owner (the user, or
    the org `org_id` the user buys for) opted in to auto top-up and has none saved yet
    (the first Checkout after opting in)."""
    async with pool.acquire() as conn:
        chosen = await store.setting(conn, org_id or user_id)
    if chosen is None or not chosen.enabled or chosen.payment_method:
        return params
    return saving_the_card(params, user_id, org_id)


async def auto_topup_view(pool: asyncpg.Pool, owner_id: str) -> AutoTopupView:
    """The auto top-up of a wallet's owner (a user's or an org's id)."""
    async with pool.acquire() as conn:
        chosen = await store.setting(conn, owner_id)
        declines = await store.declines_in_a_row(conn, owner_id)
    if chosen is None:
        return AutoTopupView(
            enabled=False, threshold_rcc=0, pack="", card_saved=False, declines_in_a_row=0
        )
    return AutoTopupView(
        enabled=chosen.enabled,
        threshold_rcc=chosen.threshold_rcc,
        pack=chosen.pack,
        card_saved=bool(chosen.payment_method),
        declines_in_a_row=declines,
    )


async def configure(
    state: State, command: ConfigureAutoTopup, key: str | None
) -> Response[AutoTopupView]:
    """Run a ConfigureAutoTopup (the pack checked first: known, and within the
    `topup.*` policies when switched on) and answer the new view."""
    settings: Settings = state.settings
    pack = settings.catalog.pack(command.pack)
    if pack is None:
        known = [p.id for p in settings.catalog.packs]
        raise ApiError(422, "unknown_pack", f"pack must be one of {known}")
    if command.enabled:
        org = command.user_id if command.owner_kind == "org" else None
        buyer = command.actor if org else command.user_id
        await within_topup_bounds(state.pool, pack, buyer, org)
    done = await execute(state.pool, command, idempotency_key=key)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    return Response(await auto_topup_view(state.pool, command.user_id), status_code=200)


@get("/me/auto-topup", responses=errors(*SIGNED_IN))
async def get_auto_topup(state: State, request: Request[Any, Any, Any]) -> AutoTopupView:
    """Your auto top-up: on or off, threshold, pack, whether a card is saved."""
    who = await me(request)
    assert who.user_id is not None
    return await auto_topup_view(state.pool, who.user_id)


@put("/me/auto-topup", responses=errors(*BODY, *SIGNED_IN, 422))
async def put_auto_topup(
    data: JSONBody[AutoTopupBody],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[AutoTopupView]:
    """Opt in or out: when a debit takes your balance below `threshold_rcc`, `pack` is
    bought with the card your next Checkout saves, once per crossing."""
    who = await me(request)
    assert who.user_id is not None
    command = ConfigureAutoTopup(
        user_id=who.user_id,
        enabled=data.enabled,
        threshold_rcc=data.threshold_rcc,
        pack=data.pack,
    )
    key = f"auto-topup:{who.user_id}:{idempotency_key}" if idempotency_key else None
    return await configure(state, command, key)


@post("/billing/portal", status_code=200, responses=errors(400, *SIGNED_IN, 409, 502, 503))
async def billing_portal(
    state: State, request: Request[Any, Any, Any], idempotency_key: IdempotencyKey = None
) -> PortalSession:
    """A Stripe customer portal session (card, invoices, subscription): `{url}`."""
    who = await me(request)
    assert who.user_id is not None
    settings: Settings = state.settings
    payments_configured(settings)
    async with state.pool.acquire() as conn:
        chosen = await store.setting(conn, who.user_id)
    if chosen is None or not chosen.customer_id:
        raise ApiError(
            409, "no_stripe_customer", "buy credits once with auto top-up on to save a card"
        )
    key = f"rcc-portal:{who.user_id}:{idempotency_key or uuid.uuid4().hex}"
    return await open_portal(settings, chosen.customer_id, "/app/credits", key)


router = Router(
    path="/",
    route_handlers=[get_auto_topup, put_auto_topup, billing_portal],
    guards=[signed_in_user],
    tags=["auto top-up"],
)
