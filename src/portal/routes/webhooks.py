"""Outbound webhooks for admins: register, list, delete endpoints; their deliveries,
the dead letters, and redelivery (CONTRACT "Plans, policies, billing states, webhooks")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from comfy_ops.outbound_guard import DownloadAddressGuard
from portal.errors import ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import admin_only, client_ip, identity_of
from portal.responses import BODY, SIGNED_IN, errors
from portal.schemas import Strict
from projections.views import Page
from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.service.bus import execute
from rcc.webhooks import store
from rcc.webhooks.commands import DeleteWebhook, RedeliverWebhook, RegisterWebhook
from rcc.webhooks.guard import UnsafeUrl
from rcc.webhooks.store import Delivery, Endpoint

Limit = Annotated[int, QueryParameter(ge=1, le=200)]
MAX_URL_LENGTH = 2000
Status = Literal["pending", "delivered", "dead"]


class NewWebhook(Strict, frozen=True, kw_only=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL_LENGTH)]
    events: Annotated[list[str], msgspec.Meta(min_length=1, max_length=20)]


class Registered(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    secret: str  # shown once: keep it where the receiver can read it
    url: str
    events: list[str]


def guard_for(settings: Settings) -> DownloadAddressGuard:
    """The model downloads' address checks (RCC_WEBHOOK_ALLOW_PRIVATE lifts them)."""
    return DownloadAddressGuard(allow_private=settings.webhook_allow_private)


async def _actor(request: Request[Any, Any, Any]) -> tuple[str, dict[str, Any]]:
    who = await identity_of(request)
    assert who is not None
    actor = who.email or f"token:{who.role}"
    return actor, {"actor": actor, "client_ip": client_ip(request), "via": who.via}


@post("/", status_code=201, responses=errors(*BODY, *SIGNED_IN, 409, 422))
async def register(
    data: JSONBody[NewWebhook],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[Registered]:
    """Register an endpoint for event types; the answer holds its secret, shown once."""
    guard = guard_for(state.settings)
    try:
        guard.check(data.url)
        await guard.check_host(data.url)
    except UnsafeUrl as refused:
        raise ApiError(422, "unsafe_url", str(refused)) from None
    actor, metadata = await _actor(request)
    command = RegisterWebhook(url=data.url.strip(), events=tuple(data.events), actor=actor)
    key = f"admin-webhooks:{actor}:{idempotency_key}" if idempotency_key else None
    done = await execute(state.pool, command, metadata=metadata, idempotency_key=key)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    return Response(msgspec.convert(done.result, Registered), status_code=201, headers=headers)


@get("/", responses=errors(400, *SIGNED_IN))
async def list_endpoints(
    state: State, cursor: FromQuery[str | None] = None, limit: Limit = 50
) -> Page[Endpoint]:
    """Live endpoints, oldest first (secrets are never shown again)."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        items = await store.list_endpoints(conn, cursor, limit)
    return Page(items=items, next_cursor=items[-1].id if len(items) == limit else None)


@delete("/{endpoint_id:str}", status_code=200, responses=errors(400, *SIGNED_IN, 404))
async def remove(
    endpoint_id: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[dict[str, Any]]:
    """Delete an endpoint: nothing more is queued for it or sent to it."""
    actor, metadata = await _actor(request)
    key = f"admin-webhooks-delete:{actor}:{idempotency_key}" if idempotency_key else None
    command = DeleteWebhook(endpoint_id=endpoint_id, actor=actor)
    done = await execute(state.pool, command, metadata=metadata, idempotency_key=key)
    if isinstance(done, DomainError):
        return domain_response(done)
    return Response(done.result, status_code=200)


def _before(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit():
        raise ApiError(400, "bad_cursor", "invalid cursor")
    return int(cursor)


@get("/{endpoint_id:str}/deliveries", responses=errors(400, *SIGNED_IN, 404))
async def deliveries(
    endpoint_id: FromPath[str],
    state: State,
    status: FromQuery[Status | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Limit = 50,
) -> Page[Delivery]:
    """An endpoint's deliveries, newest first; `status=dead` is its dead-letter list."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        if not await store.endpoint_exists(conn, endpoint_id):
            raise ApiError(404, "not_found", "no such webhook endpoint")
        items = await store.list_deliveries(conn, endpoint_id, status, _before(cursor), limit)
    return Page(items=items, next_cursor=str(items[-1].id) if len(items) == limit else None)


@get("/dead-letters", responses=errors(400, *SIGNED_IN))
async def dead_letters(
    state: State, cursor: FromQuery[str | None] = None, limit: Limit = 50
) -> Page[Delivery]:
    """Deliveries that gave up, of every endpoint, newest first."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        items = await store.list_deliveries(conn, None, "dead", _before(cursor), limit)
    return Page(items=items, next_cursor=str(items[-1].id) if len(items) == limit else None)


@post(
    "/{endpoint_id:str}/deliveries/{delivery_id:int}/retry",
    status_code=202,
    responses=errors(400, *SIGNED_IN, 404),
)
async def retry(
    endpoint_id: FromPath[str],
    delivery_id: FromPath[int],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[dict[str, Any]]:
    """Send a delivery again now, with the same `webhook-id`."""
    actor, metadata = await _actor(request)
    key = f"admin-webhooks-retry:{actor}:{idempotency_key}" if idempotency_key else None
    command = RedeliverWebhook(endpoint_id=endpoint_id, delivery_id=delivery_id, actor=actor)
    done = await execute(state.pool, command, metadata=metadata, idempotency_key=key)
    if isinstance(done, DomainError):
        return domain_response(done)
    return Response(done.result, status_code=202)


router = Router(
    path="/admin/webhooks",
    route_handlers=[register, list_endpoints, remove, dead_letters, deliveries, retry],
    guards=[admin_only],
    tags=["webhooks"],
)
