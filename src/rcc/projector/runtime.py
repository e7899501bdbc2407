"""The projector: the follower runtime (rcc.follower) applied to read models.

Every projection is a follower with its own checkpoint; one worker applies them all,
each batch in one transaction with the checkpoints (see rcc/follower/batch.py). The
composition root (rcc/cli.py) hands it the projections of `projections/`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from rcc.follower.worker import FollowerWorker
from rcc.projector.model import Projection


class ProjectorWorker(FollowerWorker):
    """Keeps these projections current: `run()` until `stop()` (or the stop event).

    Options are FollowerWorker's (batch_size, poll_interval, blocked_poll_interval,
    stop_event, on_batch)."""

    def __init__(
        self, pool: asyncpg.Pool, projections: Sequence[Projection[Any]], **options: Any
    ) -> None:
        super().__init__(pool, projections, kind="projection", label="projector", **options)
