"""The organisation aggregate: members with roles, invitations, budgets and what each
member spent this month. Pure: decisions return events or a DomainError.

Rules: roles are owner, admin and member; there is always exactly one owner (it can
neither leave nor be removed nor demoted, only hand the ownership to another member);
admins manage members and budgets but never act on the owner; a member acts only on
itself (leaving). Spending counters are per calendar month (UTC) and live in this
state, so the job's reserve and the budget check share the org head's lock.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec

from rcc.domain.blocking import account_block
from rcc.domain.errors import BudgetExceeded, Conflict, DomainError, Forbidden, Invalid, NotFound
from rcc.domain.events import (
    AccountBlockChanged,
    Event,
    OrgBudgetSet,
    OrgCreated,
    OrgInvitationAccepted,
    OrgInvitationExpired,
    OrgMemberBudgetSet,
    OrgMemberInvited,
    OrgMemberLeft,
    OrgMemberRemoved,
    OrgOwnershipTransferred,
    OrgRoleChanged,
    OrgSpendCharged,
    OrgSpendReturned,
    OrgStripeCustomerSet,
)

ROLES = ("owner", "admin", "member")
INVITABLE = frozenset({"admin", "member"})
MANAGERS = frozenset({"owner", "admin"})
MAX_NAME = 100
MAX_BUDGET_RCC = 10**12
INVITATION_S = 7 * 24 * 3600  # how long an invitation lasts unless the portal says otherwise
MAX_INVITATION_S = 30 * 24 * 3600
ORG_METADATA = "rcc_org_id"  # the Stripe metadata key naming the org a purchase is for


class Member(msgspec.Struct, frozen=True, kw_only=True):
    role: str
    email: str = ""
    budget: int | None = None  # RCC per calendar month; None: no budget of its own


class Invitation(msgspec.Struct, frozen=True, kw_only=True):
    email: str
    role: str
    token_hash: str
    expires_at: datetime


class OrgState(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str = ""
    name: str = ""
    wallet_id: str = ""
    created: bool = False
    owner: str = ""
    members: dict[str, Member] = {}
    invitations: dict[str, Invitation] = {}  # pending only: accepted or expired ones leave
    budget: int | None = None  # the whole org per calendar month
    month: str = ""  # the month the counters below are for (YYYY-MM, UTC)
    used: dict[str, int] = {}  # per member, this month
    used_total: int = 0
    blocked: bool = False  # a platform admin blocked it: nobody charges its wallet
    blocked_reason: str = ""
    stripe_customer: str = ""  # h14: the Stripe Customer it pays as ("" before a purchase)


def token_hash(token: str) -> str:
    """What is stored of an invitation token: its sha256 (the token is shown once)."""
    return hashlib.sha256(token.encode()).hexdigest()


def month_of(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m")


def resets_at(at: datetime) -> datetime:
    """The first instant of the next calendar month (UTC): when budgets start afresh."""
    at = at.astimezone(UTC)
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def evolve(state: OrgState, event: Event) -> OrgState:
    """Fold one event into the org state."""
    replace = msgspec.structs.replace
    match event:
        case OrgCreated():
            owner = Member(role="owner", email=event.owner_email)
            return OrgState(
                org_id=event.org_id,
                name=event.name,
                wallet_id=event.wallet_id,
                created=True,
                owner=event.owner_user_id,
                members={event.owner_user_id: owner},
            )
        case OrgMemberInvited():
            invitation = Invitation(
                email=event.email,
                role=event.role,
                token_hash=event.token_hash,
                expires_at=event.expires_at,
            )
            return replace(
                state, invitations={**state.invitations, event.invitation_id: invitation}
            )
        case OrgInvitationAccepted():
            pending = _without(state.invitations, event.invitation_id)
            members = {**state.members, event.user_id: Member(role=event.role, email=event.email)}
            return replace(state, invitations=pending, members=members)
        case OrgInvitationExpired():
            return replace(state, invitations=_without(state.invitations, event.invitation_id))
        case OrgRoleChanged():
            return _member_changed(state, event.user_id, role=event.role)
        case OrgMemberBudgetSet():
            return _member_changed(state, event.user_id, budget=event.monthly_budget_rcc)
        case OrgBudgetSet():
            return replace(state, budget=event.monthly_budget_rcc)
        case OrgMemberRemoved() | OrgMemberLeft():
            return replace(state, members=_without(state.members, event.user_id))
        case OrgOwnershipTransferred():
            after = _member_changed(state, event.from_user_id, role="admin")
            after = _member_changed(after, event.to_user_id, role="owner")
            return replace(after, owner=event.to_user_id)
        case OrgSpendCharged():
            return _counted(state, event.month, event.user_id, event.amount)
        case OrgSpendReturned() if event.month == state.month:
            return _counted(state, event.month, event.user_id, -event.amount)
        case AccountBlockChanged(account_kind="org"):
            return replace(state, blocked=event.blocked, blocked_reason=event.reason)
        case OrgStripeCustomerSet():
            return replace(state, stripe_customer=event.customer_id)
    return state


def _without(items: dict[str, Member] | dict[str, Invitation], key: str) -> dict:  # type: ignore[type-arg]
    return {k: v for k, v in items.items() if k != key}


def _member_changed(state: OrgState, user_id: str, **fields: object) -> OrgState:
    member = state.members.get(user_id)
    if member is None:
        return state
    changed = msgspec.structs.replace(member, **fields)
    return msgspec.structs.replace(state, members={**state.members, user_id: changed})


def _counted(state: OrgState, month: str, user_id: str, amount: int) -> OrgState:
    """The counters after a charge (positive) or a return (negative) in `month`; a new
    month starts from zero."""
    used, total = (state.used, state.used_total) if month == state.month else ({}, 0)
    mine = max(0, used.get(user_id, 0) + amount)
    used = {**used, user_id: mine} if mine else {k: v for k, v in used.items() if k != user_id}
    return msgspec.structs.replace(state, month=month, used=used, used_total=max(0, total + amount))


def fold(events: list[Event], state: OrgState | None = None) -> OrgState:
    state = state or OrgState()
    for event in events:
        state = evolve(state, event)
    return state


# --- who may do what -------------------------------------------------------------


def role_of(state: OrgState, user_id: str | None) -> str | None:
    """The caller's role, or None for anyone who is not a member (now)."""
    if user_id is None or not state.created:
        return None
    member = state.members.get(user_id)
    return member.role if member else None


def require_manager(state: OrgState, actor: str) -> DomainError | None:
    """Owners and admins manage; members are refused (403), strangers see nothing (404)."""
    role = role_of(state, actor)
    if role is None:
        return NotFound(detail="no such organisation")
    if role not in MANAGERS:
        return Forbidden(detail="only the owner and admins of the organisation may do this")
    return None


# --- decisions -------------------------------------------------------------------


def create(
    org_id: str, name: str, owner_user_id: str, owner_email: str
) -> list[Event] | DomainError:
    """A new organisation with its creator as the owner; its wallet id is its own id."""
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        return Invalid(detail=f"name must be 1 to {MAX_NAME} characters")
    return [
        OrgCreated(
            org_id=org_id,
            name=name,
            owner_user_id=owner_user_id,
            owner_email=owner_email,
            wallet_id=org_id,
            actor=owner_user_id,
        )
    ]


def invite(
    state: OrgState,
    actor: str,
    invitation_id: str,
    email: str,
    role: str,
    hashed: str,
    expires_at: datetime,
) -> list[Event] | DomainError:
    """Owners and admins invite by email, as admin or member (never as owner)."""
    if refused := require_manager(state, actor):
        return refused
    if role not in INVITABLE:
        return Invalid(detail=f"role must be one of {sorted(INVITABLE)}")
    if any(m.email == email for m in state.members.values()):
        return Conflict(detail=f"{email} is already a member")
    return [
        OrgMemberInvited(
            org_id=state.org_id,
            invitation_id=invitation_id,
            email=email,
            role=role,
            token_hash=hashed,
            expires_at=expires_at,
            actor=actor,
        )
    ]


def accept(
    state: OrgState, invitation_id: str, user_id: str, email: str, now: datetime
) -> list[Event] | DomainError:
    """Accept a pending invitation addressed to this account's email. One that has
    expired is recorded as expired (so it never works again) and refused by the caller."""
    invitation = state.invitations.get(invitation_id)
    if invitation is None:
        return NotFound(detail="no such invitation (used, expired or never issued)")
    if invitation.email != email:
        return Forbidden(detail="this invitation is for another email address")
    if now >= invitation.expires_at:
        return [
            OrgInvitationExpired(org_id=state.org_id, invitation_id=invitation_id, actor=user_id)
        ]
    if user_id in state.members:
        return Conflict(detail="you are already a member")
    return [
        OrgInvitationAccepted(
            org_id=state.org_id,
            invitation_id=invitation_id,
            user_id=user_id,
            email=email,
            role=invitation.role,
            actor=user_id,
        )
    ]


def _budget_error(budget: int | None) -> Invalid | None:
    if budget is not None and not 0 <= budget <= MAX_BUDGET_RCC:
        return Invalid(detail=f"a monthly budget is 0 to {MAX_BUDGET_RCC} RCC, or null")
    return None


def patch_member(
    state: OrgState,
    actor: str,
    user_id: str,
    *,
    role: str | None,
    budget_given: bool,
    budget: int | None,
) -> list[Event] | DomainError:
    """Change a member's role (admin/member) and/or monthly budget; admins never act
    on the owner, and the owner's role changes only by a transfer."""
    if refused := require_manager(state, actor):
        return refused
    target = state.members.get(user_id)
    if target is None:
        return NotFound(detail="no such member")
    if target.role == "owner" and role_of(state, actor) != "owner":
        return Forbidden(detail="only the owner changes the owner's settings")
    events: list[Event] = []
    if role is not None and role != target.role:
        if role not in INVITABLE:
            return Invalid(detail="role must be admin or member (ownership moves by a transfer)")
        if target.role == "owner":
            return Conflict(detail="transfer the ownership first: there is always one owner")
        events.append(OrgRoleChanged(org_id=state.org_id, user_id=user_id, role=role, actor=actor))
    if budget_given:
        if error := _budget_error(budget):
            return error
        events.append(
            OrgMemberBudgetSet(
                org_id=state.org_id, user_id=user_id, monthly_budget_rcc=budget, actor=actor
            )
        )
    return events


def remove(state: OrgState, actor: str, user_id: str) -> list[Event] | DomainError:
    """A member leaves (acting on itself), or a manager removes someone who is not the
    owner. The owner cannot leave: it transfers the ownership first."""
    actor_role = role_of(state, actor)
    if actor_role is None:
        return NotFound(detail="no such organisation")
    if user_id not in state.members:
        return NotFound(detail="no such member")
    if user_id == state.owner:
        return Conflict(detail="the owner cannot leave or be removed; transfer the ownership")
    if actor == user_id:
        return [OrgMemberLeft(org_id=state.org_id, user_id=user_id, actor=actor)]
    if actor_role not in MANAGERS:
        return Forbidden(detail="only the owner and admins remove members")
    return [OrgMemberRemoved(org_id=state.org_id, user_id=user_id, actor=actor)]


def patch_org(
    state: OrgState,
    actor: str,
    *,
    budget_given: bool,
    budget: int | None,
    new_owner: str | None,
) -> list[Event] | DomainError:
    """Set the org's monthly budget (owner, admins) and/or hand the ownership to another
    member (the owner only)."""
    if refused := require_manager(state, actor):
        return refused
    events: list[Event] = []
    if budget_given:
        if error := _budget_error(budget):
            return error
        events.append(OrgBudgetSet(org_id=state.org_id, monthly_budget_rcc=budget, actor=actor))
    if new_owner is not None and new_owner != state.owner:
        if actor != state.owner:
            return Forbidden(detail="only the owner hands the ownership on")
        if new_owner not in state.members:
            return Invalid(detail="the new owner must be a member of the organisation")
        events.append(
            OrgOwnershipTransferred(
                org_id=state.org_id, from_user_id=state.owner, to_user_id=new_owner, actor=actor
            )
        )
    return events


# --- spending --------------------------------------------------------------------


def used_this_month(state: OrgState, user_id: str | None, now: datetime) -> int:
    """What a member (or, for None, the whole org) spent in the current month."""
    if state.month != month_of(now):
        return 0
    return state.used_total if user_id is None else state.used.get(user_id, 0)


def may_charge(state: OrgState, user_id: str) -> DomainError | None:
    """Only current members spend from the org's wallet, and nobody while a platform
    admin has the org blocked: the one check point for both."""
    if not state.created:
        return NotFound(detail="no such organisation")
    if user_id not in state.members:
        return Forbidden(detail="you are not a member of this organisation")
    return account_block(state)


def charge(
    state: OrgState, user_id: str, job_id: str, amount: int, now: datetime
) -> list[Event] | BudgetExceeded:
    """Count a job's cost against the member's and the org's budget for this month, or
    refuse it when either would be exceeded."""
    month = month_of(now)
    member = state.members[user_id]
    checks = (("member", member.budget, used_this_month(state, user_id, now)),
              ("org", state.budget, used_this_month(state, None, now)))  # fmt: skip
    for scope, budget, used in checks:
        if budget is not None and used + amount > budget:
            return BudgetExceeded(
                detail=f"This job needs {amount} RCC; the {scope} budget is {budget} RCC "
                f"a month and {used} RCC are used",
                budget_rcc=budget,
                used_rcc=used,
                resets_at=resets_at(now),
                scope=scope,
            )
    if amount == 0:
        return []
    return [
        OrgSpendCharged(
            org_id=state.org_id, user_id=user_id, job_id=job_id, amount=amount, month=month
        )
    ]


def give_back(state: OrgState, user_id: str, job_id: str, amount: int, month: str) -> list[Event]:
    """A released job's budget, back to the month it was charged in."""
    if amount <= 0 or not month:
        return []
    return [
        OrgSpendReturned(
            org_id=state.org_id, user_id=user_id, job_id=job_id, amount=amount, month=month
        )
    ]
