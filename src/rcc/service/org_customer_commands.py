"""The command recording an organisation's Stripe Customer (see org_customers.py)."""

from __future__ import annotations

from typing import Any

from rcc.domain import org as orgs
from rcc.domain.errors import DomainError, NotFound
from rcc.domain.events import Event, OrgStripeCustomerSet, org_stream
from rcc.service.commands import Command
from rcc.store.unit_of_work import UnitOfWork


class SetOrgStripeCustomer(Command, frozen=True, kw_only=True):
    org_id: str
    customer_id: str
    actor: str  # the buyer whose first purchase created it


async def set_org_customer(
    cmd: SetOrgStripeCustomer, uow: UnitOfWork
) -> dict[str, Any] | DomainError:
    """Record the org's customer, unless it has one already (then that one stands)."""
    stream = org_stream(cmd.org_id)
    head = (await uow.lock(stream))[stream]
    org = head.as_state(orgs.OrgState)
    if not org.created:
        return NotFound(detail="no such organisation")
    if org.stripe_customer:
        return {"customer_id": org.stripe_customer, "created": False}
    events: list[Event] = [
        OrgStripeCustomerSet(org_id=cmd.org_id, customer_id=cmd.customer_id, actor=cmd.actor)
    ]
    uow.stage(stream, head.version, events, orgs.fold(events, org))
    return {"customer_id": cmd.customer_id, "created": True}


ORG_CUSTOMER_HANDLERS: dict[type[Command], Any] = {SetOrgStripeCustomer: set_org_customer}
