"""What a projection is: a name, its tables, a handler per event type and a flush.

Handlers are plain functions that fold one event into an in-memory batch (no I/O);
`flush` writes the whole batch with a few set-based statements. That keeps a batch of
thousands of events at a handful of round trips, which is what makes replay fast.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg

from rcc.follower.decoding import Decoded
from rcc.store.event_store import RecordedEvent

B = TypeVar("B")

# (batch, decoded event, the recorded event around it) -> None
Handler = Callable[[B, Any, RecordedEvent], None]


@dataclass(frozen=True)
class Projection(Generic[B]):
    """A read model: its checkpoint name, the tables it owns and how events change them.

    `tables` lists every table the projection writes (helper tables included), so
    `rcc replay` can rebuild exactly those. `handlers` maps an event class to its
    handler; a handler registered for a base class (e.g. LedgerEvent) sees every subclass.
    It is a follower of the log (rcc.follower): the runtime calls `apply` with each batch.
    """

    name: str
    tables: tuple[str, ...]
    new_batch: Callable[[], B]
    handlers: Mapping[type, Handler[B]]
    flush: Callable[[asyncpg.Connection, B], Awaitable[None]]
    _resolved: dict[type, Handler[B] | None] = field(default_factory=dict, compare=False)

    def handler_for(self, event_type: type) -> Handler[B] | None:
        """The handler for an event class: its own, or its nearest base class's."""
        if event_type not in self._resolved:
            found = next((self.handlers[k] for k in event_type.__mro__ if k in self.handlers), None)
            self._resolved[event_type] = found
        return self._resolved[event_type]

    async def apply(self, conn: asyncpg.Connection, events: Sequence[Decoded]) -> None:
        """Fold these events into a new batch and flush it (no I/O if none concerns us).

        An event this projection has no handler for is passed over: it is known to the
        decoder, just not this read model's business."""
        batch = self.new_batch()
        handled = False
        for record, event in events:
            handler = self.handler_for(type(event))
            if handler is not None:
                handler(batch, event, record)
                handled = True
        if handled:
            await self.flush(conn, batch)
