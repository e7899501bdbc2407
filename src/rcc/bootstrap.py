"""Wiring: which database, migrated, and the pool everything else shares."""

from __future__ import annotations

import asyncpg

from rcc.config import Settings
from rcc.store.database import connect_owner, create_pool
from rcc.store.embedded import start_embedded
from rcc.store.migrations import migrate
from rcc.store.reader_role import enable_reader_login


def database_url(settings: Settings) -> str:
    """DATABASE_URL when set; otherwise the embedded server in $RCC_DATA_DIR/pgdata."""
    if settings.database_url:
        return settings.database_url
    return start_embedded(settings.pgdata)


def direct_database_url(settings: Settings) -> str:
    """DATABASE_DIRECT_URL (default DATABASE_URL): the server itself, never a
    transaction-mode pooler, for what needs one session throughout (migrations, LISTEN,
    session advisory locks)."""
    if settings.database_direct_url:
        return settings.database_direct_url
    return database_url(settings)


async def migrate_database(url: str, reader_password: str = "") -> list[int]:
    """Apply pending migrations with the URL's own role (the app role cannot create
    tables); with a reader password, let the rcc_reader role log in with it."""
    conn = await connect_owner(url)
    try:
        applied = await migrate(conn)
        await enable_reader_login(conn, reader_password)
        return applied
    finally:
        await conn.close()


async def open_pool(
    settings: Settings, *, max_size: int = 20, direct: bool = False
) -> asyncpg.Pool:
    """Migrate (on the direct URL), then open the service pool: on DATABASE_URL, or on
    the direct URL for workers that LISTEN or hold session locks (`direct=True`)."""
    direct_url = direct_database_url(settings)
    await migrate_database(direct_url, settings.reader_password)
    if direct:
        pool = await create_pool(direct_url, max_size=max_size)
    else:
        pool = await create_pool(
            database_url(settings), max_size=max_size, pooler=settings.database_pooler
        )
    return pool
