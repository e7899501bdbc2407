"""The adapter inside another process (`rcc serve`): started and stopped with it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from comfy_adapter.config import load_adapter_settings
from comfy_adapter.worker import AdapterWorker
from rcc.background import running
from rcc.config import Settings
from rcc.queue_limits import max_running_jobs


@contextlib.asynccontextmanager
async def running_adapter(settings: Settings) -> AsyncIterator[AdapterWorker]:
    """The adapter in the background for the life of the block, on its own pool; on
    exit it stops dispatching (runs in flight are reconciled on the next start)."""
    adapter_settings = load_adapter_settings(
        settings.data_dir, max_running_per_user=max_running_jobs(settings)
    )
    async with running(
        settings,
        lambda pool: AdapterWorker(pool, adapter_settings),
        pool_size=8,
        name="rcc-adapter",
        direct=True,  # LISTEN and the leader lock
    ) as worker:
        yield worker
