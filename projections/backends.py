"""The GPU pool for GET /admin/backends and the admin page: one row per backend,
folded from the `backend-pool` events, joined at read time with the adapter's latest
health reading (`backend_health`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from rcc.domain.events import BackendAdded, BackendChanged, BackendDrained, BackendRemoved
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "backends"
TABLES = ("backends",)

_ADDED = """
INSERT INTO backends (id, url, slots, tags, added_by, added_at, updated_by, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $5, $6) ON CONFLICT (id) DO NOTHING"""
_CHANGED = (
    "UPDATE backends SET slots = $2, tags = $3, updated_by = $4, updated_at = $5 WHERE id = $1"
)
_DRAINED = "UPDATE backends SET draining = $2, updated_by = $3, updated_at = $4 WHERE id = $1"
_REMOVED = "DELETE FROM backends WHERE id = $1"


@dataclass
class Batch:
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


def on_added(batch: Batch, event: BackendAdded, record: RecordedEvent) -> None:
    params = (event.backend_id, event.url, event.slots, list(event.tags), event.actor)
    batch.statements.append((_ADDED, (*params, record.recorded_at)))


def on_changed(batch: Batch, event: BackendChanged, record: RecordedEvent) -> None:
    params = (event.backend_id, event.slots, list(event.tags), event.actor, record.recorded_at)
    batch.statements.append((_CHANGED, params))


def on_drained(batch: Batch, event: BackendDrained, record: RecordedEvent) -> None:
    params = (event.backend_id, event.draining, event.actor, record.recorded_at)
    batch.statements.append((_DRAINED, params))


def on_removed(batch: Batch, event: BackendRemoved, record: RecordedEvent) -> None:
    batch.statements.append((_REMOVED, (event.backend_id,)))


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    """In order: a batch may add, change and remove the same backend."""
    for sql, params in batch.statements:
        await conn.execute(sql, *params)


HANDLERS: dict[type, Handler[Batch]] = {
    BackendAdded: on_added,
    BackendChanged: on_changed,
    BackendDrained: on_drained,
    BackendRemoved: on_removed,
}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)


class BackendView(msgspec.Struct, frozen=True, kw_only=True):
    """A backend as admins see it: what was set, and what the adapter last measured."""

    id: str
    url: str
    slots: int
    tags: list[str]
    draining: bool
    added_by: str
    added_at: datetime
    updated_at: datetime
    health: str  # "healthy", "unreachable" or "unknown" (no adapter has looked yet)
    error: str | None
    checked_at: datetime | None
    in_use: int | None
    device: str | None
    vram_total: int | None
    vram_free: int | None
    queue_running: int | None
    queue_pending: int | None


_SELECT = """
SELECT b.id, b.url, b.slots, b.tags, b.draining, b.added_by, b.added_at, b.updated_at,
       CASE WHEN h.url IS NULL THEN 'unknown' WHEN h.healthy THEN 'healthy'
            ELSE 'unreachable' END AS health,
       NULLIF(h.error, '') AS error, h.checked_at, h.in_use, NULLIF(h.device, '') AS device,
       h.vram_total, h.vram_free, h.queue_running, h.queue_pending
  FROM backends b LEFT JOIN backend_health h ON h.url = b.url"""


async def list_backends(
    conn: asyncpg.Connection, *, after: str | None, limit: int
) -> tuple[list[BackendView], str | None]:
    """A page of backends by URL; the cursor is the last URL shown."""
    rows = await conn.fetch(
        f"{_SELECT} WHERE $1::text IS NULL OR b.url > $1 ORDER BY b.url LIMIT $2",
        after,
        limit + 1,
    )
    views = [msgspec.convert(dict(r), BackendView) for r in rows[:limit]]
    return views, (views[-1].url if len(rows) > limit else None)


async def backend(conn: asyncpg.Connection, backend_id: str) -> BackendView | None:
    """One backend, or None."""
    row = await conn.fetchrow(f"{_SELECT} WHERE b.id = $1", backend_id)
    return msgspec.convert(dict(row), BackendView) if row else None
