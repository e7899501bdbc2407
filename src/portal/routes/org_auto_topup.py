"""An organisation's auto top-up: GET, PUT and DELETE /orgs/{id}/auto-topup, for its
owner and admins (CONTRACT "Plans, policies..."). The same settings, trigger, charger
and decline count as a user's (rcc.autotopup), keyed by the org's id (its wallet's);
the charge is made on the org's Stripe Customer with the card its Checkout saved, and
the admin who turned it on is recorded as the buyer."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, Router, delete, get, put
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from portal.idempotency import IdempotencyKey
from portal.identity import signed_in_user
from portal.responses import BODY, SIGNED_IN, errors
from portal.routes.auto_topup import AutoTopupBody, AutoTopupView, auto_topup_view, configure
from portal.routes.jobs import me
from portal.routes.orgs import managed_org
from rcc.autotopup import store
from rcc.autotopup.commands import ConfigureAutoTopup

PATH = "/orgs/{org_id:str}/auto-topup"


async def _manager(state: State, request: Request[Any, Any, Any], org_id: str) -> str:
    """The caller, an owner or admin of the org (404 non-members, 403 members)."""
    who = await me(request)
    assert who.user_id is not None
    await managed_org(state, org_id, who.user_id)
    return who.user_id


def _key(org_id: str, user_id: str, header: str | None) -> str | None:
    return f"auto-topup:{org_id}:{user_id}:{header}" if header else None


@get(PATH, responses=errors(*SIGNED_IN, 404))
async def get_org_auto_topup(
    org_id: FromPath[str], state: State, request: Request[Any, Any, Any]
) -> AutoTopupView:
    """The organisation's auto top-up: on or off, threshold, pack, whether a card is saved."""
    await _manager(state, request, org_id)
    return await auto_topup_view(state.pool, org_id)


@put(PATH, responses=errors(*BODY, *SIGNED_IN, 404, 422))
async def put_org_auto_topup(
    org_id: FromPath[str],
    data: JSONBody[AutoTopupBody],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[AutoTopupView]:
    """Opt the organisation in or out: when a debit takes its wallet below
    `threshold_rcc`, `pack` is bought with the card its next Checkout saves, once per
    crossing, and credited to its wallet."""
    user_id = await _manager(state, request, org_id)
    command = ConfigureAutoTopup(
        user_id=org_id,
        enabled=data.enabled,
        threshold_rcc=data.threshold_rcc,
        pack=data.pack,
        owner_kind="org",
        actor=user_id,
    )
    return await configure(state, command, _key(org_id, user_id, idempotency_key))


@delete(PATH, status_code=200, responses=errors(400, *SIGNED_IN, 404))
async def delete_org_auto_topup(
    org_id: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[AutoTopupView]:
    """Switch the organisation's auto top-up off (its threshold, pack and card are kept)."""
    user_id = await _manager(state, request, org_id)
    async with state.pool.acquire() as conn:
        chosen = await store.setting(conn, org_id)
    if chosen is None or not chosen.enabled:
        return Response(await auto_topup_view(state.pool, org_id), status_code=200)
    command = ConfigureAutoTopup(
        user_id=org_id,
        enabled=False,
        threshold_rcc=chosen.threshold_rcc,
        pack=chosen.pack,
        owner_kind="org",
        actor=user_id,
    )
    return await configure(state, command, _key(org_id, user_id, idempotency_key))


router = Router(
    path="/",
    route_handlers=[get_org_auto_topup, put_org_auto_topup, delete_org_auto_topup],
    guards=[signed_in_user],
    tags=["organisations", "auto top-up"],
)
