"""The GPU pool: GET /admin/backends, POST /admin/backends, PATCH and DELETE
/admin/backends/{id} (CONTRACT "Backends and queues").

Admins only, reads included (a service token gets 403): backend URLs are internal
addresses. Every change is an event on the `backend-pool` stream with the admin as its
actor; the list is the `backends` read model joined with the adapter's health readings.
Each command honours Idempotency-Key, scoped to the admin who sent it.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from portal.errors import ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import admin_only, client_ip, identity_of
from portal.responses import BODY, SIGNED_IN, errors, no_content
from portal.schemas import Strict
from projections import backends as read
from projections.backends import BackendView
from projections.views import Page
from rcc.domain.backends import MAX_SLOTS, MIN_SLOTS
from rcc.domain.errors import DomainError
from rcc.projector.wait import wait_for
from rcc.service.backend_commands import AddBackend, ChangeBackend, RemoveBackend
from rcc.service.bus import execute
from rcc.service.commands import Command
from rcc.service.handlers import Done

Slots = Annotated[int, msgspec.Meta(ge=MIN_SLOTS, le=MAX_SLOTS)]
Tags = Annotated[list[str], msgspec.Meta(max_length=16)]


class NewBackend(Strict, frozen=True, kw_only=True):
    url: Annotated[str, msgspec.Meta(max_length=2000)]
    slots: Slots = 2
    tags: Tags = msgspec.field(default_factory=list)


class BackendPatch(Strict, frozen=True, kw_only=True):
    slots: Slots | None = None
    tags: Tags | None = None
    draining: bool | None = None


async def _actor(request: Request[Any, Any, Any]) -> tuple[str, dict[str, Any]]:
    who = await identity_of(request)
    assert who is not None  # the guard made sure
    actor = who.email or f"token:{who.role}"
    return actor, {"actor": actor, "client_ip": client_ip(request), "via": who.via}


async def _run(
    state: State, request: Request[Any, Any, Any], command: Command, key: str | None
) -> Done | DomainError:
    """Execute an admin's pool command under their idempotency key."""
    actor, metadata = await _actor(request)
    scoped = f"admin-backends:{actor}:{key}" if key else None
    done = await execute(state.pool, command, metadata=metadata, idempotency_key=scoped)
    if isinstance(done, Done):
        await wait_for(
            state.pool, done.checkpoint, ["backends", "ops_log"], state.settings.read_wait_s
        )
    return done


async def _shown(state: State, backend_id: str) -> BackendView:
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        view = await read.backend(conn, backend_id)
    if view is None:
        raise ApiError(404, "not_found", f"no backend {backend_id}")
    return view


def _cursor(raw: str | None) -> str | None:
    if raw is None:
        return None
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ApiError(400, "bad_cursor", "cursor is not one this API handed out") from None


@get("/backends", responses=errors(400, *SIGNED_IN))
async def list_backends(
    state: State,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    cursor: FromQuery[str | None] = None,
) -> Page[BackendView]:
    """Every backend by URL: slots, tags, draining, and the adapter's last health reading
    (healthy, GPU memory from /system_stats, ComfyUI's queue, slots in use)."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        items, last = await read.list_backends(conn, after=_cursor(cursor), limit=limit)
    next_cursor = base64.urlsafe_b64encode(last.encode()).decode().rstrip("=") if last else None
    return Page(items=items, next_cursor=next_cursor)


@post("/backends", responses=errors(*BODY, *SIGNED_IN, 409, 422))
async def add_backend(
    data: JSONBody[NewBackend],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[BackendView]:
    """Add a ComfyUI backend: `http(s)://host:port`, 1-64 slots, tags. Adapters pick it
    up within a second."""
    actor, _ = await _actor(request)
    # A retry with the same key must be the same command (its fingerprint), id included.
    backend_id = (
        uuid.uuid5(uuid.NAMESPACE_URL, f"{actor}:{idempotency_key}")
        if idempotency_key
        else uuid.uuid4()
    )
    command = AddBackend(
        backend_id=str(backend_id),
        url=data.url,
        slots=data.slots,
        tags=tuple(data.tags),
        actor=actor,
    )
    done = await _run(state, request, command, idempotency_key)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    return Response(await _shown(state, str(done.result["id"])), status_code=201)


@patch("/backends/{backend_id:str}", responses=errors(*BODY, *SIGNED_IN, 404, 409, 422))
async def patch_backend(
    backend_id: FromPath[str],
    data: JSONBody[BackendPatch],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> BackendView:
    """Change slots or tags, or drain (`draining: true`: it finishes its work and gets
    no more) and undrain a backend."""
    if data.slots is None and data.tags is None and data.draining is None:
        raise ApiError(422, "nothing_to_change", "send slots, tags or draining")
    actor, _ = await _actor(request)
    command = ChangeBackend(
        backend_id=backend_id,
        actor=actor,
        slots=data.slots,
        tags=None if data.tags is None else tuple(data.tags),
        draining=data.draining,
    )
    done = await _run(state, request, command, idempotency_key)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    return await _shown(state, backend_id)


@delete(
    "/backends/{backend_id:str}",
    status_code=204,
    responses={**errors(400, *SIGNED_IN, 404, 409), **no_content("Removed")},
)
async def remove_backend(
    backend_id: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[None]:
    """Remove a backend: it gets no more jobs (prompts it holds are still followed)."""
    actor, _ = await _actor(request)
    done = await _run(
        state, request, RemoveBackend(backend_id=backend_id, actor=actor), idempotency_key
    )
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    return Response(None, status_code=204)


router = Router(
    path="/admin",
    route_handlers=[list_backends, add_backend, patch_backend, remove_backend],
    guards=[admin_only],
    tags=["admin", "backends"],
)
