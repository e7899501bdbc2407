"""Commands about organisations: membership, budgets and the org's wallet (issue 13)."""

from __future__ import annotations

from datetime import datetime

from rcc.service.commands import Command


class CreateOrg(Command, frozen=True, kw_only=True):
    user_id: str
    name: str
    org_id: str  # chosen by the portal (derived from the Idempotency-Key when there is one)


class InviteToOrg(Command, frozen=True, kw_only=True):
    """Only the token's hash travels: the command (and its idempotency record) never
    holds a token that could accept the invitation."""

    org_id: str
    actor: str
    email: str
    role: str
    invitation_id: str
    token_hash: str
    valid_for_s: int  # the expiry is taken under the org's lock (a retry is the same command)


class AcceptInvitation(Command, frozen=True, kw_only=True):
    user_id: str
    token_hash: str


class PatchOrgMember(Command, frozen=True, kw_only=True):
    org_id: str
    actor: str
    user_id: str
    role: str | None = None
    budget_given: bool = False  # a null budget (none) differs from no change
    monthly_budget_rcc: int | None = None


class RemoveOrgMember(Command, frozen=True, kw_only=True):
    """A manager removes a member, or a member (actor == user_id) leaves."""

    org_id: str
    actor: str
    user_id: str


class PatchOrg(Command, frozen=True, kw_only=True):
    org_id: str
    actor: str
    budget_given: bool = False
    monthly_budget_rcc: int | None = None
    owner_user_id: str | None = None


class AdjustOrgCredits(Command, frozen=True, kw_only=True):
    """A platform admin's MANUAL_ADJUST of an organisation's wallet."""

    org_id: str
    actor: str
    amount: int
    note: str
    expires_at: datetime | None = None
