"""Feeding recorded events to projections: decode once, fold per projection, flush."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from rcc.domain.events import EVENT_CLASSES, Event
from rcc.projector.model import Projection
from rcc.store.event_store import Checkpoint, RecordedEvent

log = logging.getLogger(__name__)

# A newer writer's unknown event type is skipped (and named once in the log) rather
# than stopping every projection; replaying with the newer version picks it up. A
# known type that fails to decode is an error.
KNOWN_TYPES = frozenset(EVENT_CLASSES)
_warned: set[str] = set()

Decoded = tuple[RecordedEvent, Event | None]


def decode(records: Sequence[RecordedEvent]) -> list[Decoded]:
    """Each record with its typed event (None for a type this version does not know)."""
    decoded: list[Decoded] = []
    for record in records:
        cls = EVENT_CLASSES.get(record.type)
        if cls is not None:
            # What RecordedEvent.decode() gives, converted straight into the class the tag
            # names: some fifty times cheaper than converting into the union, and at
            # replay scale decoding is the projector's largest cost.
            decoded.append((record, msgspec.convert(record.data, cls)))
            continue
        if record.type not in _warned:
            _warned.add(record.type)
            log.warning(
                "skipping unknown event type %r (position %s)", record.type, record.position
            )
        decoded.append((record, None))
    return decoded


async def apply_events(
    conn: asyncpg.Connection,
    targets: Sequence[tuple[Projection[Any], Checkpoint]],
    decoded: Sequence[Decoded],
) -> None:
    """Apply the events after each projection's checkpoint to that projection.

    Runs in the caller's transaction; the caller moves the checkpoints in the same one.
    """
    for projection, after in targets:
        batch = projection.new_batch()
        handled = False
        for record, event in decoded:
            if event is None or (record.tx_id, record.position) <= (after.tx_id, after.position):
                continue
            handler = projection.handler_for(type(event))
            if handler is not None:
                handler(batch, event, record)
                handled = True
        if handled:
            await projection.flush(conn, batch)
