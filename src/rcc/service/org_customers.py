"""An organisation's own Stripe Customer (issue 13): created at Stripe on the org's
first purchase and kept on the org's stream (OrgStripeCustomerSet).

Stripe's idempotency key is the org's (`rcc-org-customer:<org id>`), so two first
purchases racing each other get the same customer from Stripe, and the command keeps
the first customer recorded: an org has one customer, whatever the interleaving."""

from __future__ import annotations

import asyncpg

from rcc.adapters.stripe_api import stripe_client
from rcc.adapters.stripe_customers import create_customer
from rcc.config import Settings
from rcc.domain import org as orgs
from rcc.domain.errors import DomainError
from rcc.service.org_customer_commands import SetOrgStripeCustomer
from rcc.service.stripe_inbox import execute_retrying


def customer_key(org_id: str) -> str:
    """Stripe's idempotency key for creating the org's customer: one per org."""
    return f"rcc-org-customer:{org_id}"


async def org_customer(
    pool: asyncpg.Pool, settings: Settings, org: orgs.OrgState, buyer: str
) -> str | DomainError:
    """The org's Stripe Customer id, created at Stripe and recorded on its first purchase
    (raises stripe.StripeError when Stripe refuses)."""
    if org.stripe_customer:
        return org.stripe_customer
    async with stripe_client(settings.stripe_secret_key, settings.stripe_api_base) as client:
        created = await create_customer(
            client, org.name, {orgs.ORG_METADATA: org.org_id}, customer_key(org.org_id)
        )
    command = SetOrgStripeCustomer(org_id=org.org_id, customer_id=created, actor=buyer)
    done = await execute_retrying(pool, command, metadata={"actor": buyer})
    if isinstance(done, DomainError):
        return done
    return str(done.result["customer_id"])
