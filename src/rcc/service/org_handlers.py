"""Handlers for organisations: each locks the org's head, decides with rcc.domain.org
and stages the events (routed from the table in handlers.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from rcc.domain import org as orgs
from rcc.domain import user as users
from rcc.domain import wallet as wallets
from rcc.domain.errors import DomainError, Invalid, NotFound
from rcc.domain.events import (
    Event,
    OrgInvitationExpired,
    WalletOpened,
    org_stream,
    user_stream,
    wallet_stream,
)
from rcc.service import org_commands as oc
from rcc.store.lot_expiries import schedule_expiries
from rcc.store.unit_of_work import UnitOfWork


class OrgChanged(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str
    events: int  # how many facts the command recorded (0: it changed nothing)


class Invited(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    org_id: str
    email: str
    role: str
    expires_at: datetime


class InvitationOutcome(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str
    invitation_id: str
    accepted: bool  # False: it had expired, and is now recorded as expired
    role: str = ""


class OrgWalletMoved(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str
    delta: int
    balance_rcc: int


def _now() -> datetime:
    return datetime.now(UTC)


async def _locked_org(uow: UnitOfWork, org_id: str) -> tuple[orgs.OrgState, int] | NotFound:
    stream = org_stream(org_id)
    head = (await uow.lock(stream))[stream]
    state = head.as_state(orgs.OrgState)
    if not state.created:
        return NotFound(detail="no such organisation")
    return state, head.version


async def _decide(
    uow: UnitOfWork,
    org_id: str,
    decide: Callable[[orgs.OrgState], list[Event] | DomainError],
) -> OrgChanged | DomainError:
    """Lock the org, decide, stage: the shape of every membership command."""
    loaded = await _locked_org(uow, org_id)
    if isinstance(loaded, DomainError):
        return loaded
    state, version = loaded
    events = decide(state)
    if isinstance(events, DomainError):
        return events
    uow.stage(org_stream(org_id), version, events, orgs.fold(events, state))
    return OrgChanged(org_id=org_id, events=len(events))


async def create_org(cmd: oc.CreateOrg, uow: UnitOfWork) -> OrgChanged | DomainError:
    """The org and its wallet (with lots, owner_kind 'org') in one transaction."""
    user = (await uow.peek(user_stream(cmd.user_id))).as_state(users.UserState)
    if not user.registered:
        return NotFound(detail="user not found")
    events = orgs.create(cmd.org_id, cmd.name, cmd.user_id, user.email)
    if isinstance(events, DomainError):
        return events
    opened: list[Event] = [
        WalletOpened(wallet_id=cmd.org_id, owner_kind="org", owner_id=cmd.org_id, lots=True)
    ]
    # Version 0 expected on both: a second org under the same id is a conflict.
    uow.stage(org_stream(cmd.org_id), 0, events, orgs.fold(events))
    uow.stage(wallet_stream(cmd.org_id), 0, opened, wallets.fold(opened))
    return OrgChanged(org_id=cmd.org_id, events=len(events))


async def invite(cmd: oc.InviteToOrg, uow: UnitOfWork) -> Invited | DomainError:
    """An invitation; its token's hash is stored with the org it opens."""
    email = users.normalise_email(cmd.email)
    if email is None:
        return Invalid(detail=f"{cmd.email!r} is not an email address")
    if not 0 < cmd.valid_for_s <= orgs.MAX_INVITATION_S:
        return Invalid(detail=f"an invitation lasts 1 to {orgs.MAX_INVITATION_S} seconds")
    expires_at = _now() + timedelta(seconds=cmd.valid_for_s)
    changed = await _decide(
        uow,
        cmd.org_id,
        lambda s: orgs.invite(
            s, cmd.actor, cmd.invitation_id, email, cmd.role, cmd.token_hash, expires_at
        ),
    )
    if isinstance(changed, DomainError):
        return changed
    await uow.conn.execute(
        "INSERT INTO org_invitation_tokens (token_hash, org_id, invitation_id) VALUES ($1, $2, $3)",
        cmd.token_hash,
        cmd.org_id,
        cmd.invitation_id,
    )
    return Invited(
        id=cmd.invitation_id,
        org_id=cmd.org_id,
        email=email,
        role=cmd.role,
        expires_at=expires_at,
    )


async def accept_invitation(
    cmd: oc.AcceptInvitation, uow: UnitOfWork
) -> InvitationOutcome | DomainError:
    """Join the org of a pending invitation addressed to this account's email."""
    row = await uow.conn.fetchrow(
        "SELECT org_id, invitation_id FROM org_invitation_tokens WHERE token_hash = $1",
        cmd.token_hash,
    )
    if row is None:
        return NotFound(detail="no such invitation")
    user = (await uow.peek(user_stream(cmd.user_id))).as_state(users.UserState)
    if not user.registered:
        return NotFound(detail="user not found")
    loaded = await _locked_org(uow, row["org_id"])
    if isinstance(loaded, DomainError):
        return loaded
    state, version = loaded
    events = orgs.accept(state, row["invitation_id"], cmd.user_id, user.email, _now())
    if isinstance(events, DomainError):
        return events
    uow.stage(org_stream(state.org_id), version, events, orgs.fold(events, state))
    expired = any(isinstance(e, OrgInvitationExpired) for e in events)
    role = "" if expired else state.invitations[row["invitation_id"]].role
    return InvitationOutcome(
        org_id=state.org_id,
        invitation_id=row["invitation_id"],
        accepted=not expired,
        role=role,
    )


async def patch_member(cmd: oc.PatchOrgMember, uow: UnitOfWork) -> OrgChanged | DomainError:
    return await _decide(
        uow,
        cmd.org_id,
        lambda s: orgs.patch_member(
            s,
            cmd.actor,
            cmd.user_id,
            role=cmd.role,
            budget_given=cmd.budget_given,
            budget=cmd.monthly_budget_rcc,
        ),
    )


async def remove_member(cmd: oc.RemoveOrgMember, uow: UnitOfWork) -> OrgChanged | DomainError:
    """Removal (or leaving) locks the org's head, as every charge to the org does: a job
    decided before it committed was a member's; one decided after sees the removal."""
    return await _decide(uow, cmd.org_id, lambda s: orgs.remove(s, cmd.actor, cmd.user_id))


async def patch_org(cmd: oc.PatchOrg, uow: UnitOfWork) -> OrgChanged | DomainError:
    return await _decide(
        uow,
        cmd.org_id,
        lambda s: orgs.patch_org(
            s,
            cmd.actor,
            budget_given=cmd.budget_given,
            budget=cmd.monthly_budget_rcc,
            new_owner=cmd.owner_user_id,
        ),
    )


async def adjust_org_credits(
    cmd: oc.AdjustOrgCredits, uow: UnitOfWork
) -> OrgWalletMoved | DomainError:
    """MANUAL_ADJUST on an org's wallet (a platform admin), as for a user's."""
    stream = wallet_stream(cmd.org_id)
    head = (await uow.lock(stream))[stream]
    wallet = head.as_state(wallets.WalletState)
    if not wallet.opened or wallet.owner_kind != "org":
        return NotFound(detail="no such organisation")
    events = wallets.adjust(wallet, cmd.amount, cmd.actor, cmd.note, _now(), cmd.expires_at)
    if isinstance(events, DomainError):
        return events
    after = wallets.fold(events, wallet)
    uow.stage(stream, head.version, events, after)
    await schedule_expiries(uow.conn, cmd.org_id, after, events)
    return OrgWalletMoved(
        org_id=cmd.org_id, delta=after.balance - wallet.balance, balance_rcc=after.balance
    )


ORG_HANDLERS: dict[type[Any], Callable[[Any, UnitOfWork], Awaitable[Any]]] = {
    oc.CreateOrg: create_org,
    oc.InviteToOrg: invite,
    oc.AcceptInvitation: accept_invitation,
    oc.PatchOrgMember: patch_member,
    oc.RemoveOrgMember: remove_member,
    oc.PatchOrg: patch_org,
    oc.AdjustOrgCredits: adjust_org_credits,
}
