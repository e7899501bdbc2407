"""The projector inside another process (`rcc serve`): started and stopped with it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from rcc.background import running
from rcc.config import Settings
from rcc.projector.model import Projection
from rcc.projector.runtime import ProjectorWorker


@contextlib.asynccontextmanager
async def running_projector(
    settings: Settings, projections: Sequence[Projection[Any]]
) -> AsyncIterator[ProjectorWorker]:
    """These projections kept current in the background for the life of the block; on
    exit the current batch finishes, then the task and the pool are closed."""
    async with running(
        settings,
        lambda pool: ProjectorWorker(pool, projections),
        pool_size=3,
        name="rcc-projector",
        direct=True,  # LISTEN
    ) as worker:
        yield worker
