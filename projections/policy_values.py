"""Policy values as rows (`policy_values`), so SQL can resolve them: the adapters' claim
applies each user's `jobs.max_running` through `rcc_policy_values_v1` (schema 0022).

One row per PolicySet of the `policies` stream, keyed by its version there (`seq`), as
the Python book (rcc.policy.book) holds it; a replay rebuilds the same rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from rcc.domain.events import PolicySet
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "policy_values"
TABLES = ("policy_values",)

_SET = """
INSERT INTO policy_values (key, scope, scope_id, effective_at, seq, value)
VALUES ($1, $2, $3, $4, $5, COALESCE($6::jsonb, 'null'::jsonb)) ON CONFLICT DO NOTHING"""


@dataclass
class Batch:
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def on_set(batch: Batch, event: PolicySet, record: RecordedEvent) -> None:
    # The pool's codec encodes the value; None travels as SQL NULL, stored as JSON null.
    batch.rows.append(
        (event.key, event.scope, event.scope_id, event.effective_at, record.version, event.value)
    )


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    if batch.rows:
        await conn.executemany(_SET, batch.rows)


HANDLERS: dict[type, Handler[Batch]] = {PolicySet: on_set}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
