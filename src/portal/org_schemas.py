"""Request and response bodies of the organisation routes (issue 13)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from portal.schemas import Strict
from rcc.domain.org import MAX_BUDGET_RCC, MAX_NAME
from rcc.domain.wallet import MAX_BALANCE_RCC

Budget = Annotated[int, msgspec.Meta(ge=0, le=MAX_BUDGET_RCC)]


class NewOrg(Strict, frozen=True, kw_only=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)]


class NewInvitation(Strict, frozen=True, kw_only=True):
    email: Annotated[str, msgspec.Meta(max_length=254)]
    role: Literal["admin", "member"] = "member"


class MemberPatch(Strict, frozen=True, kw_only=True):
    role: Literal["admin", "member"] | None = None
    # Absent: unchanged; null: no budget of its own.
    monthly_budget_rcc: Budget | msgspec.UnsetType | None = msgspec.UNSET


class OrgPatch(Strict, frozen=True, kw_only=True):
    monthly_budget_rcc: Budget | msgspec.UnsetType | None = msgspec.UNSET
    owner_user_id: str | None = None


class AdminOrgPatch(Strict, frozen=True, kw_only=True):
    """An adjustment `{rcc_delta, reason, expires_at?}`, or a block `{blocked, reason}`."""

    reason: Annotated[str, msgspec.Meta(max_length=500)]
    rcc_delta: Annotated[int, msgspec.Meta(ge=-MAX_BALANCE_RCC, le=MAX_BALANCE_RCC)] | None = None
    expires_at: datetime | None = None
    blocked: bool | None = None


class OrgCreatedView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    role: str


class OrgView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    name: str
    role: str  # the caller's
    owner_user_id: str
    member_count: int
    balance_rcc: int  # what the org's wallet can spend now
    monthly_budget_rcc: int | None  # the org's total per month (null: none)
    used_this_month_rcc: int | None  # the org's total this month (owner and admins only)
    my_budget_rcc: int | None
    my_used_this_month_rcc: int
    resets_at: datetime  # when this month's budgets start afresh (UTC)


class MemberView(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    email: str
    role: str
    monthly_budget_rcc: int | None
    used_this_month_rcc: int


class MemberPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[MemberView]
    next_cursor: str | None


class InvitationCreated(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    token: str  # shown here only: the service keeps its sha256
    email: str
    role: str
    expires_at: datetime


class InvitationAccepted(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str
    role: str


class OrgWalletView(msgspec.Struct, frozen=True, kw_only=True):
    org_id: str
    delta: int
    balance_rcc: int
