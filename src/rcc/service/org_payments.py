"""Organisations buying credits (issue 13): which wallet a purchase credits, and the
metadata a Checkout Session carries so that every later Stripe event names the org.

The buyer (a member who is the owner or an admin) stays the payment's user; the org's
id rides in the session's metadata (and, for plans, the subscription's), so the grant,
the later months and any clawback land on the org's wallet."""

from __future__ import annotations

from typing import Any

from rcc.domain import org as orgs
from rcc.domain.events import org_stream
from rcc.domain.org import ORG_METADATA
from rcc.store.unit_of_work import UnitOfWork


async def org_wallet(uow: UnitOfWork, org_id: str) -> str | None:
    """The org's wallet id (None: no such org)."""
    org = (await uow.peek(org_stream(org_id))).as_state(orgs.OrgState)
    return org.wallet_id if org.created else None


def for_org(params: dict[str, Any], org_id: str | None) -> dict[str, Any]:
    """Checkout parameters that also name the org (unchanged for a personal purchase)."""
    if org_id is None:
        return params
    metadata = {**params["metadata"], ORG_METADATA: org_id}
    changed = {**params, "metadata": metadata}
    if "subscription_data" in params:
        changed["subscription_data"] = {"metadata": metadata}
    return changed
