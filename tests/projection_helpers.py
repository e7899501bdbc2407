"""Helpers the projection tests share: drive commands, drain projectors, dump read models."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from projections.registry import ALL
from rcc.follower.batch import Follower, follow_batch
from rcc.follower.horizon import held_back
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done

READ_MODEL_TABLES = tuple(t for p in ALL for t in p.tables)


async def drain(
    pool: asyncpg.Pool, followers: Sequence[Follower] = ALL, *, limit: int = 500
) -> int:
    """Apply everything committed so far to these followers (the real projections unless
    told otherwise; their checkpoint rows must exist); return the events.

    Committed events can be held back from readers by an older transaction that is still
    running anywhere on the server (another test's database included), so "caught up"
    means no committed event lies after any checkpoint, not merely a short batch.
    """
    total = 0
    async with asyncio.timeout(120):
        while True:
            async with pool.acquire() as conn:
                result = await follow_batch(conn, followers, limit=limit)
                total += result.events
                if result.events == limit or await behind(conn, [f.name for f in followers]):
                    await asyncio.sleep(0 if result.events == limit else 0.01)
                    continue
            return total


async def settle(pool: asyncpg.Pool) -> None:
    """Wait until every committed event is visible to readers (no older transaction,
    anywhere on the server, holds it back), so a read of the log now sees all of it."""
    async with asyncio.timeout(120):
        while True:
            async with pool.acquire() as conn:
                if not await held_back(conn):
                    return
            await asyncio.sleep(0.01)


async def behind(conn: asyncpg.Connection, names: Sequence[str] | None = None) -> bool:
    """Is any committed event past the checkpoint of some projection (or, given names,
    of one of these followers)?"""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM follower_checkpoints p JOIN events e
                                ON (e.tx_id, e.position) > (p.tx_id, p.position)
                               WHERE CASE WHEN $1::text[] IS NULL THEN p.kind = 'projection'
                                          ELSE p.name = ANY($1::text[]) END)""",
            None if names is None else list(names),
        )
    )


async def dump(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read-model table, in a stable order."""
    return {
        table: sorted((tuple(r) for r in await conn.fetch(f"SELECT * FROM {table}")), key=repr)
        for table in READ_MODEL_TABLES
    }


async def done(pool: asyncpg.Pool, cmd: c.Command, **kwargs: Any) -> Done:
    outcome = await execute(pool, cmd, **kwargs)
    assert isinstance(outcome, Done), outcome
    return outcome


async def register(pool: asyncpg.Pool, *, admin: bool = False, grant: int = 0) -> str:
    """A user (optionally an admin) with `grant` RCC topped up."""
    created = await done(
        pool, c.RegisterUser(email=f"{uuid.uuid4().hex[:10]}@example.com", is_admin=admin)
    )
    user_id = str(created.result["user_id"])
    if grant:
        await done(pool, c.GrantCredits(user_id=user_id, kind="topup", amount=grant, ref=None))
    return user_id


def differences(
    left: dict[str, list[tuple[Any, ...]]], right: dict[str, list[tuple[Any, ...]]]
) -> dict[str, tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """Per table, the rows only on the left and only on the right (for assertion messages)."""
    found = {}
    for table in left.keys() | right.keys():
        a = {repr(row): row for row in left.get(table, [])}
        b = {repr(row): row for row in right.get(table, [])}
        if a.keys() != b.keys():
            found[table] = (
                [a[k] for k in sorted(a.keys() - b.keys())],
                [b[k] for k in sorted(b.keys() - a.keys())],
            )
    return found
