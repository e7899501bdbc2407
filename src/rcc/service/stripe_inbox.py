"""Stripe events into the ledger, each at most once: the one path for webhooks and reconcile.

An event runs as one command under the idempotency key `stripe:<event id>`: a
redelivery, a concurrent twin or a reconcile of an event already applied returns the
first answer and appends nothing. Two commands racing to create the same stream lose
with a conflict and simply run again (and then find the key, or the new state).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import asyncpg
import msgspec

from rcc.adapters.stripe_events import StripeEvent, command_for, parse_event, version_problem
from rcc.domain.catalog import Catalog
from rcc.domain.errors import Conflict, DomainError, IdempotencyKeyReused
from rcc.domain.lots import LotPolicy
from rcc.service.bus import execute
from rcc.service.commands import Command
from rcc.service.handlers import Done

log = logging.getLogger("rcc.payments")

ATTEMPTS = 12


class Applied(msgspec.Struct, frozen=True, kw_only=True):
    """What one Stripe event did (or had done, for a repeat)."""

    event_id: str
    event_type: str
    outcome: str
    detail: str = ""
    duplicate: bool = False


class NotApplied(RuntimeError):
    """The event could not be applied now (nothing was written); Stripe should retry."""


def idempotency_key(event_id: str) -> str:
    return f"stripe:{event_id}"


async def execute_retrying(
    pool: asyncpg.Pool, command: Command, **kwargs: Any
) -> Done | DomainError:
    """`execute`, run again while it loses a race (a conflict or a deadlock)."""
    for attempt in range(ATTEMPTS):
        try:
            done = await execute(pool, command, **kwargs)
        except asyncpg.DeadlockDetectedError:
            done = Conflict(detail="deadlock")
        if not isinstance(done, Conflict) or attempt == ATTEMPTS - 1:
            return done
        await asyncio.sleep(random.uniform(0.002, 0.01) * (attempt + 1))
    raise AssertionError("unreachable")


async def apply_event(
    pool: asyncpg.Pool,
    event: StripeEvent,
    catalog: Catalog,
    *,
    via: str,
    lots: LotPolicy | None = None,
) -> Applied:
    """Apply one Stripe event through its payment command, at most once per event id.
    `lots` says how long the credits it grants last (settings.lots)."""
    command = command_for(event, catalog)
    if lots is not None:
        command = msgspec.structs.replace(command, lots=lots)
    metadata = {
        "provider": "stripe",
        "payment_flow": "stripe",
        "stripe_event_id": event.id,
        "stripe_event_type": event.type,
        "via": via,
    }
    done = await execute_retrying(
        pool, command, metadata=metadata, idempotency_key=idempotency_key(event.id)
    )
    if isinstance(done, IdempotencyKeyReused):
        # Same event id, different content: it already took effect once; that is final.
        log.warning("stripe event %s seen before with other content; ignored", event.id)
        return Applied(event_id=event.id, event_type=event.type, outcome="duplicate",
                       duplicate=True)  # fmt: skip
    if isinstance(done, DomainError):
        raise NotApplied(f"{event.type} {event.id}: {done.detail}")
    result = done.result
    applied = Applied(
        event_id=event.id,
        event_type=event.type,
        outcome=str(result.get("outcome", "")),
        detail=str(result.get("detail", "")),
        duplicate=done.replayed,
    )
    level = logging.INFO if applied.outcome not in {"rejected", "failed"} else logging.WARNING
    log.log(
        level,
        "stripe event %s %s: %s%s",
        event.type,
        event.id,
        "duplicate of " if applied.duplicate else "",
        applied.outcome,
        extra={"stripe_event_id": event.id, "outcome": applied.outcome, "via": via},
    )
    return applied


class ReconcileReport(msgspec.Struct, kw_only=True):
    listed: int = 0
    already: int = 0
    applied: list[Applied] = []
    failed: list[str] = []


async def reconcile(
    pool: asyncpg.Pool,
    listed: list[dict[str, Any]],
    catalog: Catalog,
    say: Callable[[str], None] = print,
    lots: LotPolicy | None = None,
) -> ReconcileReport:
    """Apply the listed Stripe events the ledger lacks, oldest first, the webhook's way."""
    events = sorted((parse_event(e) for e in listed), key=lambda e: (e.created, e.id))
    report = ReconcileReport(listed=len(events))
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT key FROM idempotency_keys WHERE key = ANY($1::text[])",
            [idempotency_key(e.id) for e in events],
        )
    known = {row["key"] for row in rows}
    for event in events:
        if idempotency_key(event.id) in known:
            report.already += 1
            continue
        if problem := version_problem(event.api_version):
            report.failed.append(f"{event.id}: {problem}")
            say(f"FAILED  {event.id} {event.type}: {problem}")
            continue
        try:
            applied = await apply_event(pool, event, catalog, via="reconcile", lots=lots)
        except NotApplied as error:
            report.failed.append(str(error))
            say(f"FAILED  {event.id} {event.type}: {error}")
            continue
        report.applied.append(applied)
        detail = f" ({applied.detail})" if applied.detail else ""
        say(f"applied {event.id} {event.type}: {applied.outcome}{detail}")
    say(
        f"{report.listed} event(s) listed, {report.already} already in the ledger, "
        f"{len(report.applied)} applied, {len(report.failed)} failed"
    )
    return report
