"""The installed model files, for GET /admin/models.

One row per name. Model events are rare, so a batch keeps them in order and writes one
statement each (a replacement that fails must not lose the installed file's row).
Values come from the events only: `installed_at` is when ModelInstalled was recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from rcc.domain.events import (
    ModelDeleted,
    ModelInstalled,
    ModelInstallFailed,
    ModelInstallRequested,
)
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "models"
TABLES = ("models",)

_REQUESTED = """
INSERT INTO models (name, kind, status, source, install_id, requested_at, updated_at)
VALUES ($1, $2, 'downloading', $3, $4, $5, $5)
ON CONFLICT (name) DO UPDATE SET
    kind = excluded.kind, status = 'downloading', source = excluded.source,
    install_id = excluded.install_id, error = NULL,
    requested_at = excluded.requested_at, updated_at = excluded.updated_at"""
_INSTALLED = """
UPDATE models SET status = 'installed', size_bytes = $2, sha256 = $3, installed_at = $4,
                  install_id = NULL, error = NULL, updated_at = $4
 WHERE name = $1"""
_FAILED = """
UPDATE models SET status = CASE WHEN sha256 IS NULL THEN 'failed' ELSE 'installed' END,
                  install_id = NULL, error = $2, updated_at = $3
 WHERE name = $1"""
_DELETED = "DELETE FROM models WHERE name = $1"


@dataclass
class Batch:
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)


def on_requested(batch: Batch, event: ModelInstallRequested, record: RecordedEvent) -> None:
    batch.statements.append(
        (_REQUESTED, (event.name, event.kind, event.source, event.install_id, record.recorded_at))
    )


def on_installed(batch: Batch, event: ModelInstalled, record: RecordedEvent) -> None:
    batch.statements.append(
        (_INSTALLED, (event.name, event.size_bytes, event.sha256, record.recorded_at))
    )


def on_failed(batch: Batch, event: ModelInstallFailed, record: RecordedEvent) -> None:
    batch.statements.append((_FAILED, (event.name, event.error, record.recorded_at)))


def on_deleted(batch: Batch, event: ModelDeleted, record: RecordedEvent) -> None:
    batch.statements.append((_DELETED, (event.name,)))


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    for sql, params in batch.statements:
        await conn.execute(sql, *params)


HANDLERS: dict[type, Handler[Batch]] = {
    ModelInstallRequested: on_requested,
    ModelInstalled: on_installed,
    ModelInstallFailed: on_failed,
    ModelDeleted: on_deleted,
}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)


class ModelView(msgspec.Struct, frozen=True, kw_only=True):
    """A model file: installed, downloading (with progress) or failed (with why)."""

    name: str
    kind: str
    status: str
    size_bytes: int | None
    sha256: str | None
    installed_at: datetime | None
    source: str | None
    error: str | None
    install_id: str | None
    bytes_done: int | None  # while downloading
    bytes_total: int | None  # while downloading, when the server said
    progress_at: datetime | None  # when the download last reported progress
    requested_at: datetime
    updated_at: datetime


async def list_models(conn: asyncpg.Connection, kind: str | None = None) -> list[ModelView]:
    """Every model row by kind and name, with the progress of downloads in flight."""
    rows = await conn.fetch(
        """SELECT m.name, m.kind, m.status, m.size_bytes, m.sha256, m.installed_at, m.source,
                  m.error, m.install_id, d.bytes_done, d.bytes_total,
                  d.updated_at AS progress_at, m.requested_at, m.updated_at
             FROM models m LEFT JOIN model_downloads d ON d.install_id = m.install_id
            WHERE $1::text IS NULL OR m.kind = $1
            ORDER BY m.kind, m.name""",
        kind,
    )
    return [msgspec.convert(dict(r), ModelView) for r in rows]
