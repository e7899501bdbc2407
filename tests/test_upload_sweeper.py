"""Expired uploads lose their file on the clock (the scheduler's tick loop, as `rcc
serve` and `rcc portal` run it), not only when someone uploads again; the upload's row
and event stay as history, and a file still in its time is kept."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from rcc.config import Settings
from rcc.service.scheduler import running_scheduler
from rcc.service.upload_sweeper import UploadSweeper, uploads_dir
from tests.helpers import funded_user
from tests.portal_helpers import bearer
from tests.template_helpers import client_for, png, settings_with_backends, upload


async def test_the_tick_loop_deletes_expired_upload_files_and_keeps_their_history(
    pool: asyncpg.Pool, settings: Settings, projector: Any
) -> None:
    user = await bearer(pool, "user", await funded_user(pool, 0))
    directory = uploads_dir(settings.data_dir)
    second = settings_with_backends(settings, [], RCC_UPLOAD_TTL_S="1")
    hour = settings_with_backends(settings, [], RCC_UPLOAD_TTL_S="3600")
    async with client_for(second, pool) as short, client_for(hour, pool) as long:
        brief = [
            (await upload(short, user, png(8 + i, 8), f"{i}.png")).json()["id"] for i in range(2)
        ]
        kept = (await upload(long, user, png(), "kept.png")).json()["id"]
    assert all((directory / i).exists() for i in [*brief, kept])
    await asyncio.sleep(1.1)  # the short uploads expire; nobody uploads again

    async with running_scheduler(settings):
        for _ in range(250):
            if not any((directory / i).exists() for i in brief):
                break
            await asyncio.sleep(0.02)
    assert not any((directory / i).exists() for i in brief)
    assert (directory / kept).exists()  # still in its time
    assert await UploadSweeper(pool, directory=directory).tick() == []  # swept once
    async with pool.acquire() as conn:
        rows = await conn.fetchval("SELECT count(*) FROM uploads WHERE id = ANY($1)", brief)
        swept = await conn.fetch(
            "SELECT upload_id FROM upload_sweeps WHERE upload_id = ANY($1)", [*brief, kept]
        )
    assert rows == 2 and sorted(r["upload_id"] for r in swept) == sorted(brief)
