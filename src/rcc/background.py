"""Running a worker (projector, adapter, scheduler) inside another process for the life
of a block, as `rcc serve` does: its own pool, started on entry, stopped on exit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, Protocol, TypeVar

import asyncpg

from rcc.bootstrap import open_pool
from rcc.config import Settings


class Worker(Protocol):
    def run(self) -> Coroutine[Any, Any, None]: ...

    def stop(self) -> None: ...


W = TypeVar("W", bound=Worker)


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    make: Callable[[asyncpg.Pool], W],
    *,
    pool_size: int,
    name: str,
    direct: bool = False,
) -> AsyncIterator[W]:
    """Start `make(pool).run()` in the background; on exit stop it, wait for it to
    finish its current step, then close its pool (on the direct URL when `direct`:
    workers that LISTEN or hold session locks)."""
    pool = await open_pool(settings, max_size=pool_size, direct=direct)
    worker = make(pool)
    task = asyncio.create_task(worker.run(), name=name)
    try:
        yield worker
    finally:
        worker.stop()
        try:
            await task
        finally:
            await pool.close()
