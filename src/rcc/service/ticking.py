"""The loop of a clocked worker (the schedulers of `rcc.service.due_work`, the auto
top-up charger, the webhook sender): tick, wait, repeat until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sized
from typing import ClassVar

log = logging.getLogger(__name__)


async def tick_until_stopped(
    tick: Callable[[], Awaitable[Sized]],
    stop_event: asyncio.Event,
    *,
    name: str,
    interval_s: float,
    batch_size: int,
    max_backoff_s: float,
) -> None:
    """Tick until `stop_event` is set. A full batch ticks again at once (more is due);
    a failed tick backs off exponentially up to `max_backoff_s`, and the worker lives on."""
    errors = 0
    while not stop_event.is_set():
        wait = interval_s
        try:
            if len(await tick()) >= batch_size:
                wait = 0.0
            errors = 0
        except Exception as error:  # a worker outlives any one failed tick
            errors += 1
            log.exception("%s tick failed (attempt %s): %s", name, errors, error)
            wait = min(max_backoff_s, 0.5 * 2**errors)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop_event.wait(), wait)


class TickingWorker(ABC):
    """A worker that ticks on a clock: `tick()` once, or `run()` until `stop()`.

    A subclass names itself (`name`, in the logs) and says what one tick does; the
    batch size tells `run()` when more is waiting (a full batch ticks again at once)."""

    name: ClassVar[str]
    # A failed tick backs off up to this long before the next try.
    max_backoff_s: float = 30.0

    def __init__(
        self, *, interval_s: float, batch_size: int, stop_event: asyncio.Event | None
    ) -> None:
        self.interval_s = interval_s
        self.batch_size = batch_size
        self.stop_event = stop_event or asyncio.Event()

    @abstractmethod
    async def tick(self) -> Sized:
        """One batch of work; what came of each item."""

    def stop(self) -> None:
        """Finish the work in hand and return from `run()`."""
        self.stop_event.set()

    async def run(self) -> None:
        """Tick until stopped; a full batch ticks again at once, errors back off."""
        await tick_until_stopped(
            self.tick,
            self.stop_event,
            name=self.name,
            interval_s=self.interval_s,
            batch_size=self.batch_size,
            max_backoff_s=self.max_backoff_s,
        )
