"""Recorded events to typed events, stopping at the first type this version lacks.

A follower that skipped an event type it does not know would silently lose a newer
writer's events during a rolling deploy (and checkpoint past them, so not even a
restart would bring them back). So decoding stops there: the follower applies what
came before, keeps its checkpoint just before the unknown event and reports it; a
process of the newer version goes on from that checkpoint. Only a type unknown to
the decoder stops a follower: a known event that a projection has no handler for is
simply not its business, and it moves past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from rcc.domain.events import EVENT_CLASSES, UPCASTERS, Event, upcast
from rcc.store.event_store import Checkpoint, RecordedEvent

Decoded = tuple[RecordedEvent, Event]


@dataclass(frozen=True)
class Blocked:
    """Where a follower stopped: the first event whose type this version does not know."""

    checkpoint: Checkpoint
    type: str

    def __str__(self) -> str:
        return (
            f"blocked at position {self.checkpoint.position}: unknown event type "
            f"{self.type!r} — this version is older than the writer"
        )


def decode_known(records: Sequence[RecordedEvent]) -> tuple[list[Decoded], Blocked | None]:
    """The records up to the first unknown type, typed; and where decoding stopped."""
    decoded: list[Decoded] = []
    for record in records:
        type_, data = record.type, record.data
        if type_ in UPCASTERS:
            type_, data = upcast(type_, data)
        cls = EVENT_CLASSES.get(type_)
        if cls is None:
            return decoded, Blocked(record.checkpoint, type_)
        # Converting straight into the class the tag names is some fifty times cheaper
        # than converting into the union; at replay scale decoding is the largest cost.
        decoded.append((record, msgspec.convert(data, cls)))
    return decoded, None
