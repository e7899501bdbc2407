"""Connections: one pool for the service, always acting as the restricted `rcc_app` role."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

APP_ROLE = "rcc_app"


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


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    """The service's pool: jsonb as Python values, every connection in the rcc_app role."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_as_app_role,
        # The append function is called with changing array sizes; a statement
        # cache keyed on text is still fine, plans are generic.
        command_timeout=60,
    )
    assert pool is not None
    return pool


async def connect_owner(url: str) -> asyncpg.Connection:
    """A single connection with the URL's own role, for migrations and audits."""
    conn = await asyncpg.connect(url)
    await _set_codecs(conn)
    return conn
