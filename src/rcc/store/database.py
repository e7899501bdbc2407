"""Connections: one pool for the service, always acting as the restricted `rcc_app` role.

Behind a transaction-mode pooler (PgBouncer, Supabase's, Neon's) consecutive statements
of one client may run on different server sessions, so nothing may live in a session:
no named prepared statements (asyncpg's statement cache) and no `SET ROLE`. There the
pooled URL must log in as `rcc_app` itself, and the pool checks that it does."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from rcc.config import Pooler

APP_ROLE = "rcc_app"


class PoolerRoleError(RuntimeError):
    """The pooled URL logs in as a role that may rewrite history (not as rcc_app)."""


def _encode_json(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode()
    return msgspec.json.encode(value).decode()


async def _set_codecs(conn: asyncpg.Connection) -> None:
    for name in ("jsonb", "json"):
        await conn.set_type_codec(
            name, encoder=_encode_json, decoder=msgspec.json.decode, schema="pg_catalog"
        )


async def _as_app_role(conn: asyncpg.Connection) -> None:
    await _set_codecs(conn)
    # The service may only INSERT and SELECT events; the grants of rcc_app say so.
    await conn.execute(f"SET ROLE {APP_ROLE}")


async def _checked_app_login(conn: asyncpg.Connection) -> None:
    await _set_codecs(conn)
    # SET ROLE would stick to whichever server session ran it, not to this client, so
    # the pooled login must already be as restricted as rcc_app: refuse anything more.
    if await conn.fetchval("SELECT has_table_privilege('events', 'UPDATE')"):
        user = await conn.fetchval("SELECT current_user")
        raise PoolerRoleError(
            f"RCC_DATABASE_POOLER=transaction: DATABASE_URL logs in as {user!r}, which may "
            f"change events; log in through the pooler as {APP_ROLE} (as the owner: "
            f"ALTER ROLE {APP_ROLE} LOGIN PASSWORD '...'; see docs/OPERATIONS.md)"
        )


async def create_pool(
    url: str, *, min_size: int = 2, max_size: int = 20, pooler: Pooler = "session"
) -> asyncpg.Pool:
    """The service's pool: jsonb as Python values, every connection in the rcc_app role.

    `pooler="transaction"`: `url` is a transaction-mode pooler; no statement cache (its
    named statements would be looked for on other server sessions) and no SET ROLE."""
    transaction = pooler == "transaction"
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_checked_app_login if transaction else _as_app_role,
        # The append function is called with changing array sizes; a statement
        # cache keyed on text is still fine, plans are generic.
        statement_cache_size=0 if transaction else 100,
        command_timeout=60,
    )
    assert pool is not None
    return pool


async def connect_owner(url: str) -> asyncpg.Connection:
    """A single connection with the URL's own role, for migrations and audits."""
    conn = await asyncpg.connect(url)
    await _set_codecs(conn)
    return conn
