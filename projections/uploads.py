"""The files users uploaded, for GET /uploads/{id} and for binding upload inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from rcc.domain.events import UploadStored
from rcc.projector.model import Handler, Projection
from rcc.store.event_store import RecordedEvent

NAME = "uploads"
TABLES = ("uploads",)

_STORED = """
INSERT INTO uploads (id, user_id, kind, content_type, bytes, sha256, width, height,
                     created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING"""


@dataclass
class Batch:
    rows: list[tuple[Any, ...]] = field(default_factory=list)


def on_stored(batch: Batch, event: UploadStored, record: RecordedEvent) -> None:
    batch.rows.append(
        (
            event.upload_id,
            event.user_id,
            event.kind,
            event.content_type,
            event.bytes,
            event.sha256,
            event.width,
            event.height,
            record.recorded_at,
            event.expires_at,
        )
    )


async def flush(conn: asyncpg.Connection, batch: Batch) -> None:
    if batch.rows:
        await conn.executemany(_STORED, batch.rows)


HANDLERS: dict[type, Handler[Batch]] = {UploadStored: on_stored}

PROJECTION = Projection(NAME, TABLES, Batch, HANDLERS, flush)
