"""The projector inside another process (`rcc serve`): started and stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from rcc.bootstrap import open_pool
from rcc.config import Settings
from rcc.projector.registry import ALL
from rcc.projector.runtime import ProjectorWorker


@contextlib.asynccontextmanager
async def running_projector(settings: Settings) -> AsyncIterator[ProjectorWorker]:
    """Run every projection in the background for the life of the block, on its own pool;
    on exit the current batch finishes, then the task and the pool are closed."""
    pool = await open_pool(settings, max_size=3)
    worker = ProjectorWorker(pool, ALL)
    task = asyncio.create_task(worker.run(), name="rcc-projector")
    try:
        yield worker
    finally:
        worker.stop()
        try:
            await task
        finally:
            await pool.close()
