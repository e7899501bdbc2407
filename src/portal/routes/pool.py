"""The GPU pool in the admin API: `GET /admin/adapters` (docs/GPU_POOL.md).

Every adapter process registers itself and writes a heartbeat (adapter_instances,
schema/0016); one that stopped beating is dead, and its leases run out by themselves.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec
from litestar import Router, get
from litestar.datastructures import State
from litestar.params import FromQuery, QueryParameter

from portal.identity import admin_or_service_reader
from portal.responses import SIGNED_IN, errors
from projections.paging import Where, page
from projections.views import Page

Limit = Annotated[int, QueryParameter(ge=1, le=200)]


class AdapterView(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    host: str
    pid: int
    started_at: datetime
    last_heartbeat_at: datetime
    jobs_held: int
    alive: bool  # a heartbeat within the last lease period


@get("/adapters", responses=errors(400, *SIGNED_IN))
async def adapters(
    state: State, cursor: FromQuery[str | None] = None, limit: Limit = 50
) -> Page[AdapterView]:
    """The adapter processes, newest first: host, start, last heartbeat, jobs held."""
    pool: asyncpg.Pool = state.pool
    async with pool.acquire() as conn:
        return await page(
            conn,
            select="""SELECT id, host, pid, started_at, heartbeat_at, jobs_held,
                             heartbeat_at > now() - interval '30 seconds' AS alive
                        FROM adapter_instances""",
            where=Where(),
            time_column="started_at",
            cursor=cursor,
            limit=limit,
            build=lambda r: AdapterView(
                id=r["id"],
                host=r["host"],
                pid=r["pid"],
                started_at=r["started_at"],
                last_heartbeat_at=r["heartbeat_at"],
                jobs_held=r["jobs_held"],
                alive=r["alive"],
            ),
            id_type=str,
        )


router = Router(
    path="/admin", route_handlers=[adapters], guards=[admin_or_service_reader], tags=["admin"]
)
