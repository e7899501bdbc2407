"""The credits API for internal services (docs/HOLDS.md): read a wallet, authorize a
hold, capture or void it, record one-shot usage. Service tokens only, by scope; every
command honours Idempotency-Key (scoped to the service)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, JSONBody

from portal.credits import live_lots, lot_view, wallet_state
from portal.errors import ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import Identity, client_ip, require_identity
from portal.responses import BODY, errors
from portal.schemas import LotView, Strict
from rcc.domain import hold as holds
from rcc.domain import wallet as wallets
from rcc.domain.errors import DomainError
from rcc.domain.events import hold_stream, wallet_stream
from rcc.service.bus import execute
from rcc.service.hold_commands import AuthorizeHold, CaptureHold, RecordUsage, VoidHold
from rcc.service.holds import HoldView, UsageRecorded, hold_view
from rcc.service.wallet_refs import kind_of, resolve
from rcc.store.heads import read_head

Amount = Annotated[int, msgspec.Meta(ge=1, le=holds.MAX_HOLD_RCC)]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=holds.MAX_REASON_CHARS)]
WalletRef = Annotated[
    str, msgspec.Meta(max_length=100, examples=["user:<user id>", "org:<org id>"])
]
TimeoutS = Annotated[
    int,
    msgspec.Meta(
        ge=int(holds.MIN_TIMEOUT.total_seconds()), le=int(holds.MAX_TIMEOUT.total_seconds())
    ),
]


class HoldBody(Strict, frozen=True, kw_only=True):
    wallet: WalletRef
    amount_rcc: Amount
    reason: Reason
    timeout_s: TimeoutS = 900


class CaptureBody(Strict, frozen=True, kw_only=True):
    amount_rcc: Annotated[int, msgspec.Meta(ge=0, le=holds.MAX_HOLD_RCC)]


class UsageBody(Strict, frozen=True, kw_only=True):
    wallet: WalletRef
    amount_rcc: Amount
    reason: Reason


class CreditsWallet(msgspec.Struct, frozen=True, kw_only=True):
    wallet: str
    balance_rcc: int  # what can be spent now
    held_rcc: int  # set aside by open service holds
    lots: list[LotView]  # unexpired lots with something left, in spending order


def scope(name: str) -> Any:
    """Guard: a service token carrying `name` (403 `missing_scope` otherwise)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        who = await require_identity(connection)
        if who.role != "service" or name not in who.scopes:
            raise ApiError(403, "missing_scope", f"this needs a service token with {name}")

    return guard


async def _service(request: Request[Any, Any, Any]) -> Identity:
    who = await require_identity(request)
    return who


def _metadata(request: Request[Any, Any, Any], who: Identity) -> dict[str, Any]:
    return {"actor": who.service, "client_ip": client_ip(request), "via": "token"}


def _wallet_id(ref: str) -> str:
    wallet_id = resolve(ref)
    if isinstance(wallet_id, DomainError):
        raise ApiError(422, "invalid_wallet", wallet_id.detail)
    return wallet_id


async def _run(
    request: Request[Any, Any, Any], command: Any, key: str | None, status: int = 200
) -> Response[Any]:
    who = await _service(request)
    scoped = f"credits:{who.service}:{key}" if key else None
    done = await execute(
        request.app.state.pool, command, metadata=_metadata(request, who), idempotency_key=scoped
    )
    if isinstance(done, DomainError):
        return domain_response(done)
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    return Response(done.result, status_code=status, headers=headers)


@get(
    "/credits/wallets/{wallet:str}", guards=[scope("credits:read")], responses=errors(403, 404, 422)
)
async def get_wallet(wallet: FromPath[str], state: State) -> CreditsWallet:
    """A wallet's balance (what can be spent now), what open holds set aside, and its
    lots in spending order. Read from the wallet's head: never stale."""
    wallet_id = _wallet_id(wallet)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        head = await read_head(conn, wallet_stream(wallet_id))
    found, now = wallet_state(head.state), datetime.now(UTC)
    if not found.opened or (found.owner_kind or "user") != kind_of(wallet):
        raise ApiError(404, "not_found", "no such wallet")
    return CreditsWallet(
        wallet=wallet,
        balance_rcc=wallets.spendable(found, now),
        held_rcc=found.held,
        lots=[lot_view(lot) for lot in live_lots(found, now)],
    )


@post(
    "/holds",
    status_code=201,
    guards=[scope("credits:hold")],
    responses=errors(*BODY, 402, 403, 404, 409, 422),
)
async def authorize(
    data: JSONBody[HoldBody],
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[HoldView]:
    """Set `amount_rcc` aside on a wallet now (HOLD in its ledger), until captured,
    voided or `timeout_s` passes (then it voids itself). 402 when short."""
    who = await _service(request)
    command = AuthorizeHold(
        wallet_id=_wallet_id(data.wallet),
        wallet_kind=kind_of(data.wallet),
        amount=data.amount_rcc,
        timeout_s=data.timeout_s,
        reason=data.reason,
        service=who.service,
    )
    return await _run(request, command, idempotency_key, 201)


@post(
    "/holds/{hold_id:str}/capture",
    status_code=200,
    guards=[scope("credits:hold")],
    responses=errors(*BODY, 403, 404, 409, 422),
)
async def capture(
    hold_id: FromPath[str],
    data: JSONBody[CaptureBody],
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[HoldView]:
    """Settle your hold for `amount_rcc` (≤ held); the rest comes back at once as a
    HOLD_RELEASE that says it settles a capture. 409 if the hold has ended."""
    who = await _service(request)
    command = CaptureHold(hold_id=hold_id, amount=data.amount_rcc, service=who.service)
    return await _run(request, command, idempotency_key)


@post(
    "/holds/{hold_id:str}/void",
    status_code=200,
    guards=[scope("credits:hold")],
    responses=errors(403, 404, 409),
)
async def void(
    hold_id: FromPath[str], request: Request[Any, Any, Any], idempotency_key: IdempotencyKey = None
) -> Response[HoldView]:
    """Return your whole hold (HOLD_RELEASE). 409 if the hold has ended."""
    who = await _service(request)
    return await _run(request, VoidHold(hold_id=hold_id, service=who.service), idempotency_key)


@get("/holds/{hold_id:str}", guards=[scope("credits:hold")], responses=errors(403, 404))
async def get_hold(
    hold_id: FromPath[str], state: State, request: Request[Any, Any, Any]
) -> HoldView:
    """One of your service's holds; another service's hold is a 404 (as if absent)."""
    who = await _service(request)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        head = await read_head(conn, hold_stream(hold_id))
    found = head.as_state(holds.HoldState)
    if not found.status or found.service != who.service:
        raise ApiError(404, "not_found", "no such hold")
    return hold_view(found)


@post(
    "/usage",
    status_code=201,
    guards=[scope("credits:usage")],
    responses=errors(*BODY, 402, 403, 404, 422),
)
async def usage(
    data: JSONBody[UsageBody],
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[UsageRecorded]:
    """Charge a wallet at once (USAGE in its ledger, naming your service). 402 when short."""
    who = await _service(request)
    command = RecordUsage(
        wallet_id=_wallet_id(data.wallet),
        wallet_kind=kind_of(data.wallet),
        amount=data.amount_rcc,
        reason=data.reason,
        service=who.service,
    )
    return await _run(request, command, idempotency_key, 201)


router = Router(
    path="/",
    route_handlers=[get_wallet, authorize, capture, void, get_hold, usage],
    tags=["credits (services)"],
)
