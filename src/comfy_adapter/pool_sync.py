"""Keeps the adapter's `BackendPool` in step with the GPU pool as data.

On start the environment's COMFYUI_URLS seeds a pool nobody has written yet
(`SeedBackends`); from then on the `backend-pool` stream is the list. Every
`pool_refresh_s` the adapter reads `usable_backends()` and applies it: a new backend
is connected, a changed one gets its slots and tags, a drained one gets no new job, a
removed one gets no new job and is dropped once the prompts it holds have ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from comfy_adapter.backends import Backend, BackendPool
from comfy_adapter.client import ComfyClient
from comfy_adapter.config import AdapterSettings
from comfy_adapter.waits import wait_event
from rcc.domain.backends import BackendState
from rcc.domain.errors import DomainError
from rcc.service.backend_commands import SeedBackends
from rcc.service.backend_pool import usable_backends
from rcc.service.bus import execute

log = logging.getLogger(__name__)

MakeClient = Callable[[str], ComfyClient]


async def seed(db: asyncpg.Pool, settings: AdapterSettings) -> None:
    """COMFYUI_URLS into an untouched pool (a no-op once the pool has any event)."""
    done = await execute(db, SeedBackends(urls=settings.urls, slots=settings.slots))
    if isinstance(done, DomainError):
        log.error("COMFYUI_URLS could not seed the GPU pool: %s", done.detail)


async def wanted(db: asyncpg.Pool) -> list[BackendState]:
    """The pool as the log says it is now."""
    async with db.acquire() as conn:
        return await usable_backends(conn)


def apply(pool: BackendPool, specs: list[BackendState], make_client: MakeClient) -> bool:
    """Bring `pool` to `specs` (add, change, drain, remove); True if anything changed."""
    by_url = {spec.url: spec for spec in specs}
    moved = False
    for backend in pool.backends:
        spec = by_url.pop(backend.url, None)
        if spec is None:
            if not backend.removed:
                log.info("backend %s removed from the pool", backend.url)
                moved = True
            backend.removed = True
            continue
        changed = (backend.slots, backend.tags, backend.draining, backend.removed) != (
            spec.slots,
            frozenset(spec.tags),
            spec.draining,
            False,
        )
        backend.slots, backend.tags = spec.slots, frozenset(spec.tags)
        backend.draining, backend.removed = spec.draining, False
        if changed:
            moved = True
            pool.on_change()
    for spec in by_url.values():
        backend = Backend(make_client(spec.url), spec.slots, frozenset(spec.tags))
        backend.draining = spec.draining
        log.info("backend %s joins the pool", spec.url)
        pool.add(backend)
        moved = True
    pool.drop_idle_removed()
    return moved


async def follow(
    db: asyncpg.Pool,
    pool: BackendPool,
    make_client: MakeClient,
    stop_event: asyncio.Event,
    every_s: float,
    changed: asyncio.Event,
) -> None:
    """Re-read the pool every `every_s` until stopped (a failed read is tried again);
    `changed` is set when the pool moved, so its health is read at once."""
    while not stop_event.is_set():
        try:
            if apply(pool, await wanted(db), make_client):
                changed.set()
        except (asyncpg.PostgresError, OSError) as error:
            log.warning("reading the GPU pool failed: %s", error)
        await wait_event(stop_event, every_s)
