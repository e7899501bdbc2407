"""`replay`: rebuild beside the live tables while they serve, then swap in one transaction."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from projections import queries
from projections.registry import ALL, NAMES, select
from rcc.projector.replay import REPLAY_LOCK, ReplayBusy, replay
from rcc.projector.runtime import ProjectorWorker
from rcc.service import commands as c
from tests.projection_helpers import (
    READ_MODEL_TABLES,
    differences,
    done,
    drain,
    dump,
    register,
    settle,
)


async def table_shapes(conn: asyncpg.Connection) -> dict[str, object]:
    """Columns, index names and definitions, constraints and grants of the read models."""
    shapes: dict[str, object] = {}
    for table in READ_MODEL_TABLES:
        shapes[table] = (
            await conn.fetch(
                """SELECT column_name, data_type, is_nullable, column_default
                     FROM information_schema.columns
                    WHERE table_schema = 'public' AND table_name = $1 ORDER BY column_name""",
                table,
            ),
            await conn.fetch(
                """SELECT indexname, regexp_replace(indexdef, 'INDEX \\S+ ON ', 'INDEX ON ')
                     FROM pg_indexes WHERE schemaname = 'public' AND tablename = $1
                    ORDER BY indexname""",
                table,
            ),
            await conn.fetch(
                """SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
                    WHERE conrelid = ('public.' || $1)::regclass ORDER BY conname""",
                table,
            ),
            await conn.fetch(
                """SELECT grantee, privilege_type FROM information_schema.role_table_grants
                    WHERE table_schema = 'public' AND table_name = $1
                      AND grantee <> current_user ORDER BY 1, 2""",
                table,
            ),
        )
    return shapes


async def test_replay_rebuilds_while_the_old_tables_serve_then_swaps_them_in(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    users = [await register(pool, grant=30) for _ in range(3)]
    for user in users:
        for _ in range(5):
            await done(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"))
    await drain(pool)
    shapes = await table_shapes(owner)
    oids = {t: await owner.fetchval("SELECT $1::regclass::oid", t) for t in READ_MODEL_TABLES}
    worker = ProjectorWorker(pool, ALL, poll_interval=0.05)
    task = asyncio.create_task(worker.run())
    reads: list[int] = []
    progress: list[tuple[int, int]] = []

    async def keep_reading() -> None:  # the portal's reads go on during the rebuild
        while True:
            async with pool.acquire() as conn:
                page = await queries.ledger_page(conn, users[0], limit=500)
            reads.append(len(page.items))
            await asyncio.sleep(0)

    async def keep_writing() -> None:  # and so do commands and the live projector
        for i in range(20):
            await done(pool, c.GrantCredits(user_id=users[i % 3], kind="topup", amount=1))

    reader = asyncio.create_task(keep_reading())
    try:
        _, result = await asyncio.gather(
            keep_writing(),
            replay(owner, ALL, batch_size=7, progress=lambda n, t: progress.append((n, t))),
        )
    finally:
        reader.cancel()
        worker.stop()
        await task
    assert reads and min(reads) >= 6  # the old tables answered throughout
    assert progress and all(n <= total for n, total in progress)
    assert progress[-1][0] <= result.events  # the rest arrived during the swap's catch-up
    swapped = {t: await owner.fetchval("SELECT $1::regclass::oid", t) for t in READ_MODEL_TABLES}
    assert all(swapped[t] != oids[t] for t in READ_MODEL_TABLES), "every table is a new copy"
    assert await table_shapes(owner) == shapes  # same columns, index names, keys and grants
    assert not await owner.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname IN ('rcc_replay', 'rcc_retired')"
    )
    rebuilt = await owner.fetch("SELECT name, rebuilt_at FROM projection_checkpoints")
    assert {r["name"] for r in rebuilt if r["rebuilt_at"] is not None} == set(NAMES)
    # The live projector carried on from the swapped-in checkpoint: nothing lost or doubled.
    await drain(pool)
    live = await dump(owner)
    await replay(owner, ALL)
    await drain(pool)
    again = await dump(owner)
    assert again == live, differences(live, again)
    async with pool.acquire() as conn:
        me = await queries.user(conn, users[0])
    assert me is not None and me.balance_rcc == 30 - 5 + 7


async def test_replaying_one_projection_leaves_the_others_alone(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    await register(pool, grant=5)
    await drain(pool)
    await settle(pool)
    before = await dump(owner)
    others = {t: await owner.fetchval("SELECT $1::regclass::oid", t) for t in ("jobs", "users")}
    result = await replay(owner, select(["ledger"]))
    assert result.projections == ["ledger"] and result.events == 3
    assert {t: await owner.fetchval("SELECT $1::regclass::oid", t) for t in others} == others
    assert await dump(owner) == before


async def test_a_second_replay_at_the_same_time_is_refused(
    pool: asyncpg.Pool, owner: asyncpg.Connection, db_url: str
) -> None:
    other = await asyncpg.connect(db_url)
    try:
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", REPLAY_LOCK)
        with pytest.raises(ReplayBusy):
            await replay(owner, ALL)
    finally:
        await other.close()
    await replay(owner, ALL)  # free again once the holder is gone
