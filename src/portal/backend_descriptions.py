"""What the ComfyUI backends can run (their GET /object_info), cached per backend.

A description is fetched at most every `ttl_s` per backend, and again as soon as the
installed models change (the `models` read model moves), since loader choices list
model files. Each fetch is kept in `backend_descriptions`, so while no backend answers
a workflow is still checked against the last known description — and the answer says
so (`source: "last_known"`, with when it was fetched).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

import aiohttp
import asyncpg
import msgspec

Source = Literal["live", "cached", "last_known", "none"]
FETCH_TIMEOUT_S = 5.0


class Description(msgspec.Struct, frozen=True, kw_only=True):
    """A backend's object_info and where it came from."""

    source: Source
    backend: str | None = None
    fetched_at: datetime | None = None
    info: dict[str, Any] = {}


class _Entry(msgspec.Struct, frozen=True):
    info: dict[str, Any]
    fetched_at: datetime
    fetched_mono: float
    models_mark: str


async def _models_mark(conn: asyncpg.Connection) -> str:
    """Changes whenever a model file is installed, replaced or deleted."""
    row = await conn.fetchrow("SELECT count(*) AS n, max(updated_at) AS at FROM models")
    return f"{row['n']}:{row['at']}"


class BackendDescriptions:
    """The per-backend cache; one per portal process (on the app's state)."""

    def __init__(self, urls: tuple[str, ...], ttl_s: float) -> None:
        self.urls = urls
        self.ttl_s = ttl_s
        self._entries: dict[str, _Entry] = {}

    async def _fetch(self, url: str) -> dict[str, Any] | None:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{url}/object_info") as answer,
            ):
                if answer.status != 200:
                    return None
                body = await answer.json()
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        return body if isinstance(body, dict) and body else None

    def _fresh(self, url: str, mark: str) -> _Entry | None:
        entry = self._entries.get(url)
        if entry is None or entry.models_mark != mark:
            return None
        return entry if time.monotonic() - entry.fetched_mono < self.ttl_s else None

    async def describe(self, pool: asyncpg.Pool) -> Description:
        """The first backend's description that can be had: cached and fresh, fetched
        now, or (no backend answering) the last one any backend gave."""
        async with pool.acquire() as conn:
            mark = await _models_mark(conn)
        for url in self.urls:
            if entry := self._fresh(url, mark):
                return Description(
                    source="cached", backend=url, fetched_at=entry.fetched_at, info=entry.info
                )
            info = await self._fetch(url)
            if info is not None:
                now = datetime.now(UTC)
                self._entries[url] = _Entry(info, now, time.monotonic(), mark)
                await _keep(pool, url, info, now)
                return Description(source="live", backend=url, fetched_at=now, info=info)
        return await _last_known(pool)


async def _keep(pool: asyncpg.Pool, url: str, info: dict[str, Any], at: datetime) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO backend_descriptions (backend, body, fetched_at) VALUES ($1, $2, $3)
               ON CONFLICT (backend) DO UPDATE SET body = excluded.body,
                                                    fetched_at = excluded.fetched_at""",
            url,
            info,
            at,
        )


async def _last_known(pool: asyncpg.Pool) -> Description:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT backend, body, fetched_at FROM backend_descriptions
                ORDER BY fetched_at DESC LIMIT 1"""
        )
    if row is None:
        return Description(source="none")
    return Description(
        source="last_known", backend=row["backend"], fetched_at=row["fetched_at"], info=row["body"]
    )
