"""Wiring: which database, migrated, and the pool everything else shares."""

from __future__ import annotations

import asyncpg

from rcc.config import Settings
from rcc.store.database import connect_owner, create_pool
from rcc.store.embedded import start_embedded
from rcc.store.migrations import migrate


def database_url(settings: Settings) -> str:
    """DATABASE_URL when set; otherwise the embedded server in $RCC_DATA_DIR/pgdata."""
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.pgdata)


async def migrate_database(url: str) -> list[int]:
    """Apply pending migrations with the URL's own role (the app role cannot create tables)."""
    conn = await connect_owner(url)
    try:
        return await migrate(conn)
    finally:
        await conn.close()


async def open_pool(settings: Settings, *, max_size: int = 20) -> asyncpg.Pool:
    """Migrate, then open the service pool."""
    url = database_url(settings)
    await migrate_database(url)
    return await create_pool(url, max_size=max_size)
