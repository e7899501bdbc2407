"""Each backend's health as the admins see it: every `health_s` the adapter asks
`/system_stats` (GPU memory, ComfyUI's version) and `/queue` (ComfyUI's own line) of
every backend in the pool and writes one `backend_health` row per URL, with the slots
it holds. It also writes why jobs of a type wait when their tags match no live backend
(`adapter_status.type_reasons`; the carriers that are unreachable or draining are
named, comfy_adapter/tag_reasons.py), which the portal adds to those jobs'
`waiting_reason`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import asyncpg
import msgspec

from comfy_adapter.backends import Backend, BackendPool
from comfy_adapter.client import BackendError
from comfy_adapter.tag_reasons import tag_wait_reason
from rcc.domain.backend_tags import reason_key, required_tags

log = logging.getLogger(__name__)


class Reading(msgspec.Struct, kw_only=True):
    """What one poll saw of one backend."""

    url: str
    healthy: bool
    error: str = ""
    device: str = ""
    vram_total: int | None = None
    vram_free: int | None = None
    queue_running: int | None = None
    queue_pending: int | None = None
    in_use: int = 0
    comfyui_version: str = ""


def _stats_fields(stats: dict[str, Any]) -> dict[str, Any]:
    """GPU memory of the first device (ComfyUI runs on one) and the version."""
    devices = stats.get("devices") or [{}]
    first = devices[0] if isinstance(devices[0], dict) else {}
    total, free = first.get("vram_total"), first.get("vram_free")
    return {
        "device": str(first.get("name") or ""),
        "vram_total": total if isinstance(total, int) else None,
        "vram_free": free if isinstance(free, int) else None,
        "comfyui_version": str((stats.get("system") or {}).get("comfyui_version") or ""),
    }


async def read_backend(backend: Backend) -> Reading:
    """One backend's /system_stats and /queue; unreachable says why."""
    try:
        stats = await backend.client.system_stats()
        queue = await backend.client.queue()
    except (BackendError, msgspec.DecodeError) as error:
        return Reading(url=backend.url, healthy=False, error=str(error) or type(error).__name__)
    return Reading(
        url=backend.url,
        healthy=True,  # it answers; a websocket that is down (yet) is said in `error`
        error="" if backend.healthy else f"websocket: {backend.last_error}",
        queue_running=len(queue.queue_running),
        queue_pending=len(queue.queue_pending),
        in_use=len(backend.in_flight),
        **_stats_fields(stats),
    )


def type_reasons(
    pool: BackendPool,
    by_type: Mapping[str, frozenset[str]],
    templated: Iterable[tuple[str, Sequence[str]]] = (),
) -> dict[str, str]:
    """For each job type with tags no live backend (healthy, not draining) carries, and
    each (job type, template tags) of a waiting job: why (the carriers that are
    unreachable or draining, named; or that none carries them), by `reason_key`."""
    needs = {job_type: required for job_type, required in by_type.items() if required}
    for job_type, extra in templated:
        needs[reason_key(job_type, extra)] = required_tags(job_type, by_type, extra)
    return {
        key: reason
        for key, required in needs.items()
        if (reason := tag_wait_reason(required, pool.backends)) is not None
    }


async def templated_tags(db: asyncpg.Pool) -> list[tuple[str, list[str]]]:
    """The job types and template tags of jobs waiting with tags of their own."""
    async with db.acquire() as conn:
        rows = await conn.fetch(
            """SELECT DISTINCT job_type, required_tags FROM adapter_jobs
                WHERE status IN ('created', 'queued') AND prompt_id IS NULL
                  AND cardinality(required_tags) > 0"""
        )
    return [(r["job_type"], list(r["required_tags"])) for r in rows]


_WRITE = """
INSERT INTO backend_health (url, adapter, checked_at, healthy, error, device, vram_total,
                            vram_free, queue_running, queue_pending, in_use, comfyui_version)
SELECT r.url, $1, now(), r.healthy, r.error, r.device, r.vram_total, r.vram_free,
       r.queue_running, r.queue_pending, r.in_use, r.comfyui_version
  FROM jsonb_to_recordset($2::jsonb) AS r(url text, healthy boolean, error text, device text,
       vram_total bigint, vram_free bigint, queue_running int, queue_pending int, in_use int,
       comfyui_version text)
ON CONFLICT (url) DO UPDATE SET adapter = excluded.adapter, checked_at = excluded.checked_at,
    healthy = excluded.healthy, error = excluded.error, device = excluded.device,
    vram_total = excluded.vram_total, vram_free = excluded.vram_free,
    queue_running = excluded.queue_running, queue_pending = excluded.queue_pending,
    in_use = excluded.in_use, comfyui_version = excluded.comfyui_version"""


async def record(
    db: asyncpg.Pool, adapter: str, readings: list[Reading], reasons: dict[str, str]
) -> None:
    """Write the readings and the per-type reasons (the heartbeat row exists by then)."""
    async with db.acquire() as conn:
        await conn.execute(_WRITE, adapter, msgspec.json.encode(readings).decode())
        await conn.execute(
            "UPDATE adapter_status SET type_reasons = $2::jsonb WHERE name = $1",
            adapter,
            msgspec.json.encode(reasons).decode(),
        )


async def watch(
    db: asyncpg.Pool,
    pool: BackendPool,
    adapter: str,
    by_type: Mapping[str, frozenset[str]],
    stop_event: asyncio.Event,
    every_s: float,
    changed: asyncio.Event,
) -> None:
    """Poll every backend every `every_s`, and soon after the pool changed (`changed`:
    a new backend's health shows within moments), until stopped."""
    while not stop_event.is_set():
        changed.clear()
        backends = [b for b in pool.backends if not b.removed]
        readings = list(await asyncio.gather(*(read_backend(b) for b in backends)))
        try:
            reasons = type_reasons(pool, by_type, await templated_tags(db))
            await record(db, adapter, readings, reasons)
        except (asyncpg.PostgresError, OSError) as error:
            log.warning("recording backend health failed: %s", error)
        await _either(stop_event, changed, every_s)


async def _either(stop_event: asyncio.Event, changed: asyncio.Event, seconds: float) -> None:
    """Sleep until stopped, the pool changed, or `seconds` passed."""
    waiters = [asyncio.ensure_future(e.wait()) for e in (stop_event, changed)]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
