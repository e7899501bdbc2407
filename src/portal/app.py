"""The app factory: `create_app(settings)` wires the pool into a Litestar application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from litestar import Litestar, get
from litestar.datastructures import State
from litestar.response import Response

from rcc.bootstrap import open_pool
from rcc.config import Settings
from rcc.store.migrations import pending


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(state: State) -> Response[dict[str, object]]:
    """Readiness: the database answers and every migration is applied."""
    pool: asyncpg.Pool = state.pool
    try:
        async with pool.acquire() as conn:
            missing = await pending(conn)
    except (OSError, asyncpg.PostgresError) as error:
        return Response({"status": "unavailable", "database": str(error)}, status_code=503)
    if missing:
        return Response({"status": "migrating", "pending_migrations": missing}, status_code=503)
    return Response({"status": "ready"}, status_code=200)


def create_app(settings: Settings, pool: asyncpg.Pool | None = None) -> Litestar:
    """The portal; it opens (and closes) its own pool unless one is given."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own = pool is None
        app.state.pool = pool if pool is not None else await open_pool(settings)
        try:
            yield
        finally:
            if own:
                await app.state.pool.close()

    return Litestar(route_handlers=[healthz, readyz], lifespan=[lifespan])
