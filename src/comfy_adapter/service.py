"""The adapter inside another process (`rcc serve`): started and stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from comfy_adapter.config import load_adapter_settings
from comfy_adapter.worker import AdapterWorker
from rcc.bootstrap import open_pool
from rcc.config import Settings


@contextlib.asynccontextmanager
async def running_adapter(settings: Settings) -> AsyncIterator[AdapterWorker]:
    """Run the adapter in the background for the life of the block, on its own pool;
    on exit it stops dispatching (runs in flight are reconciled on the next start)."""
    pool = await open_pool(settings, max_size=8)
    worker = AdapterWorker(pool, load_adapter_settings(settings.data_dir))
    task = asyncio.create_task(worker.run(), name="rcc-adapter")
    try:
        yield worker
    finally:
        worker.stop()
        try:
            await task
        finally:
            await pool.close()
