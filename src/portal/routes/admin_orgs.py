"""Platform admins and organisations: GET /admin/orgs, PATCH /admin/orgs/{id} (an
adjustment of the org's wallet, like PATCH /admin/users/{id})."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import Request, Response, Router, get, patch
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from portal.errors import ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import admin_or_service_reader, client_ip, identity_of
from portal.org_schemas import AdminOrgPatch, OrgWalletView
from portal.responses import BODY, SIGNED_IN, errors
from portal.routes.policies import block_account
from projections import org_queries
from projections.org_queries import AdminOrgView
from projections.views import Page
from rcc.domain.errors import DomainError
from rcc.service.bus import execute
from rcc.service.org_commands import AdjustOrgCredits

Limit = Annotated[int, QueryParameter(ge=1, le=200)]


@get("/orgs", responses=errors(400, *SIGNED_IN))
async def list_orgs(
    state: State,
    name: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Limit = 50,
) -> Page[AdminOrgView]:
    """Every organisation, newest first, with its balance; `name` matches its start."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        return await org_queries.admin_orgs_page(conn, name=name, cursor=cursor, limit=limit)


@patch("/orgs/{org_id:str}", responses=errors(*BODY, *SIGNED_IN, 404, 409, 422, 503))
async def patch_org(
    org_id: FromPath[str],
    data: JSONBody[AdminOrgPatch],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[OrgWalletView]:
    """Adjust the org wallet's RCC (MANUAL_ADJUST with a reason; a positive one may
    expire at `expires_at`), or block / unblock the org with a reason (its own patch:
    members keep reading, nobody charges its wallet; running jobs finish)."""
    if data.blocked is not None:
        if data.rcc_delta is not None or data.expires_at is not None:
            raise ApiError(422, "invalid", "send blocked (with a reason) in a patch of its own")
        return await block_account(  # type: ignore[return-value]
            request, state, org_id, data.blocked, data.reason, idempotency_key, kind="org"
        )
    who = await identity_of(request)
    assert who is not None
    if data.rcc_delta is None:
        raise ApiError(422, "nothing_to_change", "send rcc_delta (with a reason) or blocked")
    if not data.reason.strip():
        raise ApiError(422, "reason_required", "a reason is required for any rcc_delta")
    if data.expires_at is not None and data.expires_at.tzinfo is None:
        raise ApiError(422, "invalid", "expires_at needs a time zone (e.g. 2027-01-01T00:00:00Z)")
    actor = who.email or f"token:{who.role}"
    command = AdjustOrgCredits(
        org_id=org_id,
        actor=actor,
        amount=data.rcc_delta,
        note=data.reason,
        expires_at=data.expires_at,
    )
    key = f"admin-orgs:{actor}:{idempotency_key}" if idempotency_key else None
    metadata = {"actor": actor, "client_ip": client_ip(request), "via": who.via}
    done = await execute(state.pool, command, metadata=metadata, idempotency_key=key)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    moved = done.result
    view = OrgWalletView(
        org_id=moved["org_id"], delta=moved["delta"], balance_rcc=moved["balance_rcc"]
    )
    return Response(view, status_code=200, headers=headers)


router = Router(
    path="/admin",
    route_handlers=[list_orgs, patch_org],
    guards=[admin_or_service_reader],
    tags=["admin", "organisations"],
)
