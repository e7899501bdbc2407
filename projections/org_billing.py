"""The Stripe Customer each organisation pays as (h14): `org_stripe_customers`, from
the org streams' OrgStripeCustomerSet (one per org: the org's head keeps the first)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from rcc.domain.events import OrgStripeCustomerSet
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "org_billing"
TABLES = ("org_stripe_customers",)

_SET = """
INSERT INTO org_stripe_customers (org_id, customer_id, set_by, set_at)
VALUES ($1, $2, $3, $4) ON CONFLICT (org_id) DO NOTHING"""


@dataclass
class Batch:
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def on_customer_set(batch: Batch, event: OrgStripeCustomerSet, record: RecordedEvent) -> None:
    batch.rows.append((event.org_id, event.customer_id, event.actor, record.recorded_at))


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    if batch.rows:
        await conn.executemany(_SET, batch.rows)


HANDLERS: dict[type, Handler[Batch]] = {OrgStripeCustomerSet: on_customer_set}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
