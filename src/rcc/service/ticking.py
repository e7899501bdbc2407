"""The loop of a clocked worker (the schedulers of `rcc.service.due_work`, the auto
top-up charger, the webhook sender): tick, wait, repeat until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sized

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
