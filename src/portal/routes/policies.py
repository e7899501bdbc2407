"""Policies, plans and blocking over HTTP (h6; docs/POLICIES.md):
GET /admin/policies, PUT /admin/policies/{key}, GET /admin/policies/{key}/history,
GET /plans (public: every plan with its limits), and the block patch's handler."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Response, Router, get, put
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from portal.errors import ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import admin_or_service_reader, client_ip, identity_of
from portal.responses import BODY, SIGNED_IN, errors
from portal.schemas import Strict
from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.domain.events import PolicyValue
from rcc.policy import KEYS, current_book
from rcc.policy.book import Entry, PolicyBook, resolve, scope_values
from rcc.policy.plans import PlanLimits, plan_table
from rcc.service.bus import execute
from rcc.service.policy_commands import SetAccountBlocked, SetPolicy
from rcc.service.policy_handlers import BlockChanged, PolicyChanged

Scope = Annotated[str, msgspec.Meta(pattern="^(global|plan|org|user)$")]


class PolicyPut(Strict, frozen=True, kw_only=True):
    scope: Scope
    scope_id: str | None = None
    value: PolicyValue
    effective_at: datetime | None = None
    reason: str


class ScopeValue(msgspec.Struct, frozen=True, kw_only=True):
    scope: str
    scope_id: str
    value: PolicyValue
    effective_at: datetime


class PolicyView(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    type: str  # "int" or "int_list"
    minimum: int
    maximum: int
    nullable: bool
    unit: str
    description: str
    default: PolicyValue
    values: list[ScopeValue]  # every scope's setting in effect now
    scheduled: list[ScopeValue]  # settings that take effect later


class PolicyPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[PolicyView]
    next_cursor: str | None


class HistoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    scope: str
    scope_id: str
    value: PolicyValue
    before: PolicyValue
    effective_at: datetime
    recorded_at: datetime
    reason: str
    actor: str


class History(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    as_of: datetime
    resolved: PolicyValue  # for the scope asked (user/org/plan) at as_of
    in_effect: list[ScopeValue]  # every scope's setting at as_of
    items: list[HistoryEntry]  # changes recorded up to as_of, newest first
    next_cursor: str | None


class PlanPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[PlanLimits]
    next_cursor: str | None = None


def _scope_value(entry: Entry) -> ScopeValue:
    return ScopeValue(
        scope=entry.scope,
        scope_id=entry.scope_id,
        value=entry.value,
        effective_at=entry.effective_at,
    )


async def _book(state: State) -> PolicyBook:
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        return await current_book(conn)


@get("/policies", responses=errors(400, *SIGNED_IN))
async def list_policies(
    state: State,
    cursor: FromQuery[str | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> PolicyPage:
    """Every key with its type, bounds, default and values by scope, in key order."""
    book, now = await _book(state), datetime.now(UTC)
    names = [n for n in sorted(KEYS) if cursor is None or n > cursor][:limit]
    items = []
    for name in names:
        key = KEYS[name]
        current = scope_values(book, name, now)
        later = [e for e in book.entries if e.key == name and e.effective_at > now]
        items.append(
            PolicyView(
                key=name, type=key.kind, minimum=key.minimum, maximum=key.maximum,
                nullable=key.nullable, unit=key.unit, description=key.description,
                default=key.default, values=[_scope_value(e) for e in current.values()],
                scheduled=[_scope_value(e) for e in later],
            )
        )  # fmt: skip
    more = len(names) == limit and names[-1] != sorted(KEYS)[-1]
    return PolicyPage(items=items, next_cursor=names[-1] if more else None)


def _known(key: str) -> None:
    if key not in KEYS:
        raise ApiError(404, "unknown_policy", f"no policy key {key!r}; see GET /admin/policies")


@put("/policies/{key:str}", responses=errors(*BODY, *SIGNED_IN, 404, 409, 422))
async def put_policy(
    key: FromPath[str],
    data: JSONBody[PolicyPut],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> Response[PolicyChanged]:
    """Set `key` for a scope, now or from a future `effective_at`, with a reason.
    Out-of-bounds values are a 422 naming the bounds; nothing is written then."""
    _known(key)
    who = await identity_of(request)
    assert who is not None
    actor = who.email or f"token:{who.role}"
    command = SetPolicy(
        key=key, scope=data.scope, scope_id=data.scope_id or "", value=data.value,
        effective_at=data.effective_at, reason=data.reason, actor=actor,
    )  # fmt: skip
    metadata = {"actor": actor, "client_ip": client_ip(request), "via": who.via}
    idem = f"admin-policies:{actor}:{idempotency_key}" if idempotency_key else None
    done = await execute(state.pool, command, metadata=metadata, idempotency_key=idem)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    headers = {"Idempotent-Replayed": "true"} if done.replayed else {}
    return Response(done.result, status_code=200, headers=headers)


@get("/policies/{key:str}/history", responses=errors(400, *SIGNED_IN, 404))
async def policy_history(
    key: FromPath[str],
    state: State,
    as_of: FromQuery[datetime | None] = None,
    user: FromQuery[str | None] = None,
    org: FromQuery[str | None] = None,
    plan: FromQuery[str | None] = None,
    cursor: FromQuery[int | None] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> History:
    """Every change of `key` recorded up to `as_of` (default now), newest first, and
    what was in effect then: per scope, and `resolved` for the user/org/plan given."""
    _known(key)
    if as_of is not None and as_of.tzinfo is None:
        raise ApiError(400, "invalid_request", "as_of needs a time zone (e.g. ...T10:00:00Z)")
    book, when = await _book(state), as_of or datetime.now(UTC)
    changes = [
        e for e in reversed(book.entries)
        if e.key == key and e.recorded_at <= when and (cursor is None or e.seq < cursor)
    ][:limit]  # fmt: skip
    items = [
        HistoryEntry(
            seq=e.seq, scope=e.scope, scope_id=e.scope_id, value=e.value, before=e.before,
            effective_at=e.effective_at, recorded_at=e.recorded_at, reason=e.reason,
            actor=e.actor,
        )
        for e in changes
    ]  # fmt: skip
    return History(
        key=key,
        as_of=when,
        resolved=resolve(book, key, user=user, org=org, plan=plan, at=when),
        in_effect=[_scope_value(e) for e in scope_values(book, key, when).values()],
        items=items,
        next_cursor=str(items[-1].seq) if len(items) == limit else None,
    )


@get("/plans", responses=errors())
async def list_plans(state: State) -> PlanPage:
    """Every plan (free first) with its price, monthly credits, daily limit, running and
    queued jobs and job prices, as policies resolve them now (public)."""
    settings: Settings = state.settings
    book = await _book(state)
    return PlanPage(items=plan_table(book, settings.catalog, settings.max_running_jobs_per_user))


async def block_account(
    request: Request[Any, Any, Any],
    state: State,
    user_id: str,
    blocked: bool,
    reason: str | None,
    idempotency_key: str | None,
    *,
    kind: str = "user",
) -> Response[BlockChanged]:
    """PATCH /admin/users/{id} (or /admin/orgs/{id}, `kind="org"`) with `{blocked,
    reason}`: block or unblock, audited."""
    if not (reason or "").strip():
        raise ApiError(422, "reason_required", "a reason is required to block or unblock")
    who = await identity_of(request)
    assert who is not None
    actor = who.email or f"token:{who.role}"
    command = SetAccountBlocked(
        user_id=user_id, blocked=blocked, reason=reason or "", actor=actor, account_kind=kind
    )
    metadata = {"actor": actor, "client_ip": client_ip(request), "via": who.via}
    key = f"admin-{kind}s:{actor}:{idempotency_key}" if idempotency_key else None
    done = await execute(state.pool, command, metadata=metadata, idempotency_key=key)
    if isinstance(done, DomainError):
        return domain_response(done)  # type: ignore[return-value]
    return Response(done.result, status_code=200)


plans_router = Router(path="/", route_handlers=[list_plans], tags=["plans"])

policies_router = Router(
    path="/admin",
    route_handlers=[list_policies, put_policy, policy_history],
    guards=[admin_or_service_reader],
    tags=["policies"],
)
