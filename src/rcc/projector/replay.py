"""`rcc replay`: rebuild read models from position 0 beside the live ones, then swap.

1. Empty copies of the live tables are made in the schema `rcc_replay` (same columns,
   defaults, checks, primary and unique keys and index names; secondary indexes are
   built after the bulk load, which is much faster than maintaining them row by row).
2. The whole log is applied to the copies in batches, each its own transaction, while
   the live tables keep serving and the live projector keeps them current.
3. One transaction takes the projections' batch locks (waiting for a live batch to
   finish), applies what arrived meanwhile, moves the live tables out to `rcc_retired`
   and the copies into `public`, copies the grants and sets the checkpoints. Readers
   see the old tables or the new ones, never a mix; the live projector continues from
   the new checkpoint on the new tables.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from rcc.follower import checkpoints
from rcc.follower.batch import apply_batch
from rcc.follower.decoding import decode_known
from rcc.projector.model import Projection
from rcc.store.event_store import Checkpoint, read_all

SHADOW = "rcc_replay"
RETIRED = "rcc_retired"
# One replay at a time (a session lock: it spans the many batch transactions).
REPLAY_LOCK = checkpoints.lock_key("rcc.replay")
_INDEX_DEF = re.compile(r"^CREATE (UNIQUE )?INDEX (\S+) ON (\S+) (USING .*)$")

Progress = Callable[[int, int], None]  # (events applied, events in the log when we started)


class ReplayBusy(RuntimeError):
    """Another replay holds the replay lock."""


class ReplayBlocked(RuntimeError):
    """The log holds an event type this version does not know: a replay by it would
    leave that event out, so it stops instead (the message says where)."""


@dataclass(frozen=True)
class ReplayResult:
    projections: list[str]
    events: int
    seconds: float
    checkpoint: Checkpoint

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Index:
    name: str
    unique: bool
    sql: str  # CREATE ... ON rcc_replay.<table> ...


async def replay(
    conn: asyncpg.Connection,
    projections: Sequence[Projection[Any]],
    *,
    batch_size: int = 5000,
    progress: Progress | None = None,
) -> ReplayResult:
    """Rebuild these projections from position 0 and swap them in (owner connection)."""
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", REPLAY_LOCK):
        raise ReplayBusy("another replay is running")
    started = time.perf_counter()
    names = [p.name for p in projections]
    tables = [t for p in projections for t in p.tables]
    path = await conn.fetchval("SELECT current_setting('search_path')")
    try:
        await checkpoints.ensure(conn, names)
        later = await _prepare(conn, tables)
        total = int(await conn.fetchval("SELECT count(*) FROM events"))
        await conn.execute(f"SET search_path TO {SHADOW}, public")
        applied, at = await _catch_up(conn, projections, Checkpoint(), batch_size, progress, total)
        for index in later:
            await conn.execute(index.sql)
        await conn.execute("ANALYZE " + ", ".join(f"{SHADOW}.{t}" for t in tables))
        async with conn.transaction():
            await checkpoints.lock(conn, names)
            more, at = await _catch_up(conn, projections, at, batch_size, None, total)
            applied += more
            await _swap(conn, tables)
            await checkpoints.save(conn, names, at, rebuilt=True)
        await conn.execute(f"DROP SCHEMA {RETIRED} CASCADE")
        await conn.execute(f"DROP SCHEMA {SHADOW} CASCADE")
    finally:
        await conn.execute("SELECT set_config('search_path', $1, false)", path)
        await conn.execute("SELECT pg_advisory_unlock($1)", REPLAY_LOCK)
    return ReplayResult(names, applied, time.perf_counter() - started, at)


async def _catch_up(
    conn: asyncpg.Connection,
    projections: Sequence[Projection[Any]],
    at: Checkpoint,
    batch_size: int,
    progress: Progress | None,
    total: int,
) -> tuple[int, Checkpoint]:
    """Apply everything after `at` to the shadow tables; return (events, new checkpoint)."""
    applied = 0
    while True:
        async with conn.transaction():
            records = await read_all(conn, at, batch_size)
            decoded, blocked = decode_known(records)
            if blocked is not None:
                raise ReplayBlocked(str(blocked))
            if decoded:
                await apply_batch(conn, [(p, at) for p in projections], decoded)
        if not records:
            return applied, at
        at = records[-1].checkpoint
        applied += len(records)
        if progress is not None:
            progress(applied, max(total, applied))


async def _prepare(conn: asyncpg.Connection, tables: Sequence[str]) -> list[_Index]:
    """Fresh shadow copies of `tables`; returns the secondary indexes to build later."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {SHADOW} CASCADE")
    await conn.execute(f"DROP SCHEMA IF EXISTS {RETIRED} CASCADE")
    await conn.execute(f"CREATE SCHEMA {SHADOW}")
    await conn.execute(f"CREATE SCHEMA {RETIRED}")
    later: list[_Index] = []
    for table in tables:
        await conn.execute(
            f"CREATE TABLE {SHADOW}.{table} (LIKE public.{table} INCLUDING ALL EXCLUDING INDEXES)"
        )
        # Primary and unique keys keep their names (constraint names are per schema).
        for row in await conn.fetch(
            """SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
                WHERE conrelid = $1::regclass AND contype IN ('p', 'u')""",
            f"public.{table}",
        ):
            await conn.execute(
                f'ALTER TABLE {SHADOW}.{table} ADD CONSTRAINT "{row["conname"]}" {row["def"]}'
            )
        for index in await _plain_indexes(conn, table):
            if index.unique:
                await conn.execute(index.sql)  # lookups and upserts need it during the load
            else:
                later.append(index)
    return later


async def _plain_indexes(conn: asyncpg.Connection, table: str) -> list[_Index]:
    """The live table's indexes that back no constraint, rewritten for the shadow copy."""
    rows = await conn.fetch(
        """SELECT i.indisunique AS is_unique, pg_get_indexdef(i.indexrelid) AS def
             FROM pg_index i
            WHERE i.indrelid = $1::regclass
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)""",
        f"public.{table}",
    )
    found = []
    for row in rows:
        match = _INDEX_DEF.match(row["def"])
        if match is None:
            raise RuntimeError(f"cannot copy index definition: {row['def']}")
        unique, name, _, rest = match.groups()
        sql = f"CREATE {unique or ''}INDEX {name} ON {SHADOW}.{table} {rest}"
        found.append(_Index(name, bool(unique), sql))
    return found


async def _swap(conn: asyncpg.Connection, tables: Sequence[str]) -> None:
    """Move the live tables out and the rebuilt ones in, keeping the live grants and
    pointing every view over them (rcc_read's) at the rebuilt ones."""
    views = await _views_over(conn, tables)
    for table in tables:
        grants = await conn.fetch(
            """SELECT a.privilege_type,
                      CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END AS who
                 FROM pg_class c
                 CROSS JOIN LATERAL aclexplode(c.relacl) a
                 LEFT JOIN pg_roles r ON r.oid = a.grantee
                WHERE c.oid = $1::regclass AND a.grantee <> c.relowner""",
            f"public.{table}",
        )
        await conn.execute(f"ALTER TABLE public.{table} SET SCHEMA {RETIRED}")
        await conn.execute(f"ALTER TABLE {SHADOW}.{table} SET SCHEMA public")
        for grant in grants:
            await conn.execute(
                f"GRANT {grant['privilege_type']} ON public.{table} TO {grant['who']}"
            )
    # A view follows its tables' OIDs, not their names: left alone it would go on
    # reading the retired tables (and be dropped with them). Replacing its query in
    # this transaction keeps the view itself, so its grants and readers stay.
    for name, definition in views:
        await conn.execute(f"CREATE OR REPLACE VIEW {name} AS {definition}")


async def _views_over(conn: asyncpg.Connection, tables: Sequence[str]) -> list[tuple[str, str]]:
    """The views that read these tables, with definitions whose names are all
    schema-qualified (read with an empty search path), so they bind to `public`."""
    path = await conn.fetchval("SELECT current_setting('search_path')")
    await conn.execute("SELECT set_config('search_path', 'pg_catalog', true)")
    rows = await conn.fetch(
        """SELECT DISTINCT v.oid::regclass::text AS name, pg_get_viewdef(v.oid) AS definition
             FROM pg_depend d
             JOIN pg_rewrite r ON r.oid = d.objid
             JOIN pg_class v ON v.oid = r.ev_class
            WHERE d.classid = 'pg_rewrite'::regclass
              AND d.refclassid = 'pg_class'::regclass
              AND d.refobjid = ANY($1::regclass[])
              AND v.relkind = 'v' AND v.oid <> d.refobjid""",
        [f"public.{table}" for table in tables],
    )
    await conn.execute("SELECT set_config('search_path', $1, true)", path)
    return [(row["name"], row["definition"]) for row in rows]
