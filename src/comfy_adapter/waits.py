"""Waiting with a bound, without `asyncio.wait_for`.

On Python 3.11, `wait_for` can swallow a cancellation that arrives just as the inner
await completes, and a worker loop then never stops. `asyncio.wait` never cancels
what it waits for, so a cancellation of the caller always reaches the caller.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout: float) -> bool:  # noqa: ASYNC109
    """Wait until `event` is set or `timeout` seconds pass; True if it was set."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=max(timeout, 0))
    finally:
        waiter.cancel()
    return event.is_set()


async def get_within(queue: asyncio.Queue[T], timeout: float) -> T | None:  # noqa: ASYNC109
    """The next item of `queue`, or None after `timeout` seconds (nothing is lost:
    a cancelled `Queue.get` leaves its item in the queue)."""
    if not queue.empty():
        return queue.get_nowait()
    getter = asyncio.ensure_future(queue.get())
    try:
        done, _ = await asyncio.wait({getter}, timeout=max(timeout, 0))
    finally:
        if not getter.done():
            getter.cancel()
    return getter.result() if getter in done else None
