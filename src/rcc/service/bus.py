"""`execute`: the one way a command reaches the ledger (portal, CLI, adapter, webhooks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from rcc.domain.errors import Conflict, DomainError, IdempotencyKeyReused
from rcc.service.commands import Command
from rcc.service.handlers import HANDLERS, Done, fingerprint
from rcc.store.event_store import Checkpoint, StreamVersionConflict
from rcc.store.unit_of_work import KeyTaken, Remembered, UnitOfWork


def _replay(remembered: Remembered, print_: bytes) -> Done | IdempotencyKeyReused:
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


async def execute(
    pool: asyncpg.Pool,
    cmd: Command,
    *,
    metadata: dict[str, Any] | None = None,
    idempotency_key: str | None = None,
) -> Done | DomainError:
    """Run a command in one transaction: its events and its key commit together or not at all.

    A repeated key with the same command returns the first answer (`replayed=True`)
    and appends nothing, also when both arrive at once; a key reused for a different
    command is refused. A refused command writes nothing, the key included.
    """
    handler = HANDLERS[type(cmd)]
    print_ = fingerprint(cmd) if idempotency_key else b""
    try:
        async with UnitOfWork(pool, metadata) as uow:
            if idempotency_key:
                remembered = await uow.recall(idempotency_key)
                if remembered is not None:
                    return _replay(remembered, print_)
            outcome = await handler(cmd, uow)
            if isinstance(outcome, DomainError):
                return outcome
            remember = (idempotency_key, print_) if idempotency_key else None
            appended = await uow.commit(remember, outcome)
    except KeyTaken as taken:
        return _replay(taken.remembered, print_)
    except StreamVersionConflict as conflict:
        return Conflict(detail=str(conflict))
    last = appended[-1] if appended else None
    checkpoint = Checkpoint(last.tx_id, last.position) if last else Checkpoint()
    return Done(
        result=msgspec.to_builtins(outcome),
        checkpoint=checkpoint,
        recorded_at=last.recorded_at if last else None,
    )
