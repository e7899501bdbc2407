"""Organisations (issue 13): create, members and roles, invitations, budgets, the org's
ledger and jobs. Platform admins: /admin/orgs (see admin_orgs.py).

Who may read is decided on the org's head, never a read model, so a removal counts at
once: a non-member (a removed member too) gets 404, a member asking for what only the
owner and admins see gets 403. Tokens without a user (service, admin) get 403.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Request, Router, delete, get, patch, post
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from portal.consistency import caught_up
from portal.errors import ApiError, domain_response
from portal.idempotency import IdempotencyKey
from portal.identity import Identity, client_ip, identity_of, signed_in_user
from portal.org_schemas import (
    InvitationAccepted,
    InvitationCreated,
    MemberPage,
    MemberPatch,
    MemberView,
    NewInvitation,
    NewOrg,
    OrgCreatedView,
    OrgPatch,
    OrgView,
)
from portal.responses import BODY, SIGNED_IN, errors, no_content
from portal.schemas import JobStatus, Reason
from projections import org_queries
from projections.org_queries import MyOrg
from projections.views import JobView, LedgerEntry, Page
from rcc.config import Settings
from rcc.domain import org as orgs
from rcc.domain import wallet as wallets
from rcc.domain.errors import DomainError
from rcc.projector.wait import wait_for
from rcc.service import org_commands as oc
from rcc.service.bus import execute
from rcc.service.commands import Command
from rcc.service.handlers import Done
from rcc.service.org_reads import log_head, org_now
from rcc.service.org_spending import org_of
from rcc.store.event_store import Checkpoint

Limit = Annotated[int, QueryParameter(ge=1, le=200)]


async def _me(request: Request[Any, Any, Any]) -> tuple[Identity, str]:
    who = await identity_of(request)
    assert who is not None and who.user_id is not None  # the guard made sure
    return who, who.user_id


def _metadata(request: Request[Any, Any, Any], who: Identity) -> dict[str, Any]:
    return {"actor": who.email or who.user_id, "client_ip": client_ip(request), "via": who.via}


async def _run(
    state: State,
    request: Request[Any, Any, Any],
    command: Command,
    scope: str,
    key: str | None,
) -> Done:
    """Execute under the caller's key space; a refusal becomes its HTTP error."""
    who, user_id = await _me(request)
    scoped = f"orgs:{user_id}:{scope}:{key}" if key else None
    done = await execute(
        state.pool, command, metadata=_metadata(request, who), idempotency_key=scoped
    )
    if isinstance(done, DomainError):
        raise _refused(done)
    return done


def _refused(error: DomainError) -> ApiError:
    response = domain_response(error)
    body = dict(response.content)
    return ApiError(response.status_code or 422, body.pop("error"), body.pop("detail"), **body)


async def _org_for(
    state: State, org_id: str, user_id: str, *, managers_only: bool
) -> tuple[orgs.OrgState, wallets.WalletState, str]:
    """The org and the caller's role in it, or 404 (not a member) / 403 (not a manager)."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        org, wallet = await org_now(conn, org_id)
    role = orgs.role_of(org, user_id)
    if role is None:
        raise ApiError(404, "not_found", "no such organisation")
    if managers_only and role not in orgs.MANAGERS:
        raise ApiError(403, "forbidden", "only the owner and admins of the organisation see this")
    return org, wallet, role


async def buying_org(state: State, wallet: str | None, user_id: str) -> str | None:
    """The org a purchase is for (`org:<id>`, the owner and admins only), or None for
    the buyer's own wallet."""
    org_id = org_of(wallet, user_id)
    if isinstance(org_id, DomainError):
        raise _refused(org_id)
    if org_id is not None:
        await _org_for(state, org_id, user_id, managers_only=True)
    return org_id


async def managed_org(state: State, org_id: str, user_id: str) -> orgs.OrgState:
    """The org, for its owner and admins only (404 for non-members, 403 for members)."""
    org, _, _ = await _org_for(state, org_id, user_id, managers_only=True)
    return org


def _view(org: orgs.OrgState, wallet: wallets.WalletState, user_id: str) -> OrgView:
    now = datetime.now(UTC)
    role = orgs.role_of(org, user_id) or ""
    manager = role in orgs.MANAGERS
    me = org.members.get(user_id)
    return OrgView(
        id=org.org_id,
        name=org.name,
        role=role,
        owner_user_id=org.owner,
        member_count=len(org.members),
        balance_rcc=wallets.spendable(wallet, now),
        monthly_budget_rcc=org.budget,
        used_this_month_rcc=orgs.used_this_month(org, None, now) if manager else None,
        my_budget_rcc=me.budget if me else None,
        my_used_this_month_rcc=orgs.used_this_month(org, user_id, now),
        resets_at=orgs.resets_at(now),
    )


def _derived(settings: Settings, purpose: str, key: str) -> str:
    """A value a retry under the same Idempotency-Key derives again (an id, a token),
    keyed by the service's secret so nobody can derive it from the key alone."""
    secret = settings.session_secret.encode()
    return hmac.new(secret, f"{purpose}\0{key}".encode(), hashlib.sha256).hexdigest()


@post("/orgs", status_code=201, responses=errors(*BODY, *SIGNED_IN, 409, 422, 503))
async def create_org(
    data: JSONBody[NewOrg],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> OrgCreatedView:
    """A new organisation (and its wallet) with you as its owner."""
    _, user_id = await _me(request)
    key = f"{user_id}:{idempotency_key}" if idempotency_key else None
    org_id = str(uuid.UUID(_derived(state.settings, "org", key)[:32])) if key else str(uuid.uuid4())
    command = oc.CreateOrg(user_id=user_id, name=data.name, org_id=org_id)
    done = await _run(state, request, command, "create", idempotency_key)
    return OrgCreatedView(id=done.result["org_id"], name=data.name.strip(), role="owner")


@get("/orgs", responses=errors(400, *SIGNED_IN))
async def my_orgs(
    state: State, request: Request[Any, Any, Any], cursor: FromQuery[str | None] = None,
    limit: Limit = 50,
) -> Page[MyOrg]:  # fmt: skip
    """The organisations you belong to, with your role."""
    _, user_id = await _me(request)
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        head = await log_head(conn)
    await wait_for(pool, Checkpoint(*head), ["orgs"], state.settings.read_wait_s)
    async with pool.acquire() as conn:
        return await org_queries.my_orgs_page(conn, user_id, cursor=cursor, limit=limit)


@get("/orgs/{org_id:str}", responses=errors(400, *SIGNED_IN, 404))
async def get_org(org_id: FromPath[str], state: State, request: Request[Any, Any, Any]) -> OrgView:
    """The org, its balance, and your budget and usage this month (the org's usage for
    the owner and admins)."""
    _, user_id = await _me(request)
    org, wallet, _ = await _org_for(state, org_id, user_id, managers_only=False)
    return _view(org, wallet, user_id)


@get("/orgs/{org_id:str}/members", responses=errors(400, *SIGNED_IN, 404))
async def members(
    org_id: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    cursor: FromQuery[str | None] = None,
    limit: Limit = 50,
) -> MemberPage:
    """Every member with role, budget and usage this month (owner and admins), by user id;
    `cursor` is the last user id of the previous page."""
    _, user_id = await _me(request)
    org, _, _ = await _org_for(state, org_id, user_id, managers_only=True)
    now = datetime.now(UTC)
    ids = sorted(uid for uid in org.members if cursor is None or uid > cursor)
    shown = ids[:limit]
    items = [
        MemberView(
            user_id=uid,
            email=org.members[uid].email,
            role=org.members[uid].role,
            monthly_budget_rcc=org.members[uid].budget,
            used_this_month_rcc=orgs.used_this_month(org, uid, now),
        )
        for uid in shown
    ]
    return MemberPage(items=items, next_cursor=shown[-1] if len(ids) > limit else None)


@post(
    "/orgs/{org_id:str}/invitations",
    status_code=201,
    responses=errors(*BODY, *SIGNED_IN, 404, 409, 422, 503),
)
async def invite(
    org_id: FromPath[str],
    data: JSONBody[NewInvitation],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> InvitationCreated:
    """Invite someone by email (owner and admins). The token is in this answer only
    (a repeat under the same Idempotency-Key derives it again); it lasts 7 days."""
    _, user_id = await _me(request)
    settings: Settings = state.settings
    if idempotency_key:
        seed = _derived(settings, "invite", f"{user_id}:{org_id}:{idempotency_key}")
        token, invitation_id = seed, str(uuid.UUID(seed[:32]))
    else:
        token, invitation_id = secrets.token_urlsafe(32), str(uuid.uuid4())
    command = oc.InviteToOrg(
        org_id=org_id,
        actor=user_id,
        email=data.email,
        role=data.role,
        invitation_id=invitation_id,
        token_hash=orgs.token_hash(token),
        valid_for_s=orgs.INVITATION_S,
    )
    done = await _run(state, request, command, f"invite:{org_id}", idempotency_key)
    invited = done.result
    return InvitationCreated(
        id=invited["id"],
        token=token,
        email=invited["email"],
        role=invited["role"],
        expires_at=msgspec.convert(invited["expires_at"], datetime),
    )


@post(
    "/invitations/{token:str}/accept",
    status_code=200,
    responses=errors(400, *SIGNED_IN, 404, 409, 503),
)
async def accept(
    token: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> InvitationAccepted:
    """Join the organisation of an invitation sent to your account's email. 410
    `invitation_expired` once it has expired (it never works again)."""
    _, user_id = await _me(request)
    command = oc.AcceptInvitation(user_id=user_id, token_hash=orgs.token_hash(token))
    done = await _run(state, request, command, "accept", idempotency_key)
    if not done.result["accepted"]:
        raise ApiError(410, "invitation_expired", "this invitation has expired; ask for a new one")
    return InvitationAccepted(org_id=done.result["org_id"], role=done.result["role"])


@patch(
    "/orgs/{org_id:str}/members/{user_id:str}",
    responses=errors(*BODY, *SIGNED_IN, 404, 409, 422, 503),
)
async def patch_member(
    org_id: FromPath[str],
    user_id: FromPath[str],
    data: JSONBody[MemberPatch],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> MemberView:
    """Change a member's role and/or monthly budget (owner and admins; null: no budget)."""
    _, actor = await _me(request)
    given = data.monthly_budget_rcc is not msgspec.UNSET
    command = oc.PatchOrgMember(
        org_id=org_id,
        actor=actor,
        user_id=user_id,
        role=data.role,
        budget_given=given,
        monthly_budget_rcc=data.monthly_budget_rcc if given else None,  # type: ignore[arg-type]
    )
    await _run(state, request, command, f"member:{org_id}:{user_id}", idempotency_key)
    org, _, _ = await _org_for(state, org_id, actor, managers_only=True)
    member = org.members[user_id]
    now = datetime.now(UTC)
    return MemberView(
        user_id=user_id,
        email=member.email,
        role=member.role,
        monthly_budget_rcc=member.budget,
        used_this_month_rcc=orgs.used_this_month(org, user_id, now),
    )


@delete(
    "/orgs/{org_id:str}/members/{user_id:str}",
    status_code=204,
    responses={**errors(400, *SIGNED_IN, 404, 409, 503), **no_content("Removed (or left)")},
)
async def remove_member(
    org_id: FromPath[str],
    user_id: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> None:
    """Remove a member (owner and admins), or leave (your own user id). From the moment
    this answers, nothing that member submits can charge the org."""
    _, actor = await _me(request)
    command = oc.RemoveOrgMember(org_id=org_id, actor=actor, user_id=user_id)
    await _run(state, request, command, f"remove:{org_id}:{user_id}", idempotency_key)


@patch("/orgs/{org_id:str}", responses=errors(*BODY, *SIGNED_IN, 404, 409, 422, 503))
async def patch_org(
    org_id: FromPath[str],
    data: JSONBody[OrgPatch],
    state: State,
    request: Request[Any, Any, Any],
    idempotency_key: IdempotencyKey = None,
) -> OrgView:
    """Set the org's monthly budget (owner and admins) and/or hand the ownership to a
    member (the owner only; the previous owner becomes an admin)."""
    _, actor = await _me(request)
    given = data.monthly_budget_rcc is not msgspec.UNSET
    command = oc.PatchOrg(
        org_id=org_id,
        actor=actor,
        budget_given=given,
        monthly_budget_rcc=data.monthly_budget_rcc if given else None,  # type: ignore[arg-type]
        owner_user_id=data.owner_user_id,
    )
    await _run(state, request, command, f"org:{org_id}", idempotency_key)
    org, wallet, _ = await _org_for(state, org_id, actor, managers_only=False)
    return _view(org, wallet, actor)


@get("/orgs/{org_id:str}/ledger", responses=errors(400, *SIGNED_IN, 404))
async def org_ledger(
    org_id: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    member: FromQuery[str | None] = None,
    reason: FromQuery[Reason | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Limit = 50,
) -> Page[LedgerEntry]:
    """The org wallet's ledger (owner and admins); `member` keeps that member's jobs."""
    _, user_id = await _me(request)
    await _org_for(state, org_id, user_id, managers_only=True)
    pool: asyncpg.Pool = state.pool
    await caught_up(pool, org_id, ["ledger", "jobs"], state.settings.read_wait_s)
    async with pool.acquire() as conn:
        return await org_queries.org_ledger_page(
            conn, org_id, member=member, reason=reason, cursor=cursor, limit=limit
        )


@get("/orgs/{org_id:str}/jobs", responses=errors(400, *SIGNED_IN, 404))
async def org_jobs(
    org_id: FromPath[str],
    state: State,
    request: Request[Any, Any, Any],
    member: FromQuery[str | None] = None,
    status: FromQuery[JobStatus | None] = None,
    cursor: FromQuery[str | None] = None,
    limit: Limit = 50,
) -> Page[JobView]:
    """Jobs charged to the org: every member's for the owner and admins (`member`
    filters), your own for a member."""
    _, user_id = await _me(request)
    _, _, role = await _org_for(state, org_id, user_id, managers_only=False)
    whose = member if role in orgs.MANAGERS else user_id
    pool: asyncpg.Pool = state.pool
    await caught_up(pool, org_id, ["jobs"], state.settings.read_wait_s)
    async with pool.acquire() as conn:
        return await org_queries.org_jobs_page(
            conn, org_id, user_id=whose, status=status, cursor=cursor, limit=limit
        )


router = Router(
    path="/",
    route_handlers=[
        create_org,
        my_orgs,
        get_org,
        members,
        invite,
        accept,
        patch_member,
        remove_member,
        patch_org,
        org_ledger,
        org_jobs,
    ],
    guards=[signed_in_user],
    tags=["organisations"],
)
