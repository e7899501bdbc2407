"""`execute`: the one way a command reaches the ledger (portal, CLI, adapter, webhooks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from rcc.domain.errors import Conflict, DomainError, IdempotencyKeyReused
from rcc.service.coalesce import coalescer_for
from rcc.service.commands import Command, CreateJob
from rcc.service.handlers import HANDLERS, Done, fingerprint
from rcc.store.event_store import Appended, Checkpoint, StreamVersionConflict
from rcc.store.unit_of_work import KeyTaken, Remember, Remembered, UnitOfWork


def replay(remembered: Remembered, print_: bytes) -> Done | IdempotencyKeyReused:
    """The first answer given under a key, or a refusal if the key meant another command."""
    if bytes(remembered.fingerprint) != print_:
        return IdempotencyKeyReused(
            detail="this Idempotency-Key was already used for a different request"
        )
    tx_id, position = remembered.result["checkpoint"]
    recorded = remembered.result.get("recorded_at")
    return Done(
        result=remembered.result["result"],
        checkpoint=Checkpoint(tx_id, position),
        replayed=True,
        recorded_at=datetime.fromisoformat(recorded) if recorded else None,
    )


def done(outcome: Any, appended: list[Appended]) -> Done:
    """A committed command's answer, pointing at the last event of its transaction."""
    last = appended[-1] if appended else None
    return Done(
        result=msgspec.to_builtins(outcome),
        checkpoint=Checkpoint(last.tx_id, last.position) if last else Checkpoint(),
        recorded_at=last.recorded_at if last else None,
    )


async def execute(
    pool: asyncpg.Pool,
    cmd: Command,
    *,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Done | DomainError:
    """Run a command in one transaction: its events and its key commit together or not at all.

    A keyed command waits for any other command under its key to finish before it
    decides. A repeated key with the same command then returns the first answer
    (`replayed=True`) and appends nothing, also when both arrive at once; a key reused
    for a different command is refused. A refused command writes nothing, the key
    included, so a later command under that key decides afresh, as if the refused one
    had never come (docs/TRUST.md says why). Job creations that arrive together share
    a transaction (see coalesce.py); each still gets its own answer only after that
    transaction committed. If COMMIT's reply is lost, the answer waits until it is known
    whether it committed (rcc.store.outcome): the real answer, or OutcomeUnknown.
    """
    # Jobs on an org's wallet run alone: they lock the org's head too (org_spending).
    if isinstance(cmd, CreateJob) and cmd.org_id is None:
        return await coalescer_for(pool).submit(cmd, metadata, idempotency_key)
    return await execute_alone(pool, cmd, metadata=metadata, idempotency_key=idempotency_key)


async def execute_alone(
    pool: asyncpg.Pool,
    cmd: Command,
    *,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Done | DomainError:
    """`execute` for one command in its own transaction."""
    handler = HANDLERS[type(cmd)]
    print_ = fingerprint(cmd) if idempotency_key else b""
    try:
        async with UnitOfWork(pool, metadata) as uow:
            if idempotency_key:
                remembered = await uow.serialise(idempotency_key)
                if idempotency_key in remembered:
                    return replay(remembered[idempotency_key], print_)
            outcome = await handler(cmd, uow)
            if isinstance(outcome, DomainError):
                return outcome
            keys = [Remember(idempotency_key, print_, outcome)] if idempotency_key else None
            appended = await uow.commit(keys)
    except KeyTaken as taken:
        return replay(taken.remembered, print_)
    except StreamVersionConflict as conflict:
        return Conflict(detail=str(conflict))
    return done(outcome, appended)
