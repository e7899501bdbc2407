"""The projector runtime on real PostgreSQL: worker, read-your-writes, locking, failures."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest

from projections import queries
from projections.registry import ALL, NAMES
from rcc.follower import checkpoints
from rcc.follower.batch import follow_batch
from rcc.follower.status import status
from rcc.projector.model import Projection
from rcc.projector.runtime import ProjectorWorker
from rcc.projector.wait import wait_for
from rcc.service import commands as c
from rcc.store.database import create_pool
from rcc.store.event_store import Checkpoint, RecordedEvent
from tests.projection_helpers import done, drain, dump, register, settle


@contextlib.asynccontextmanager
async def running(worker: ProjectorWorker) -> AsyncIterator[ProjectorWorker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def test_worker_keeps_read_models_current_and_wait_for_sees_each_command(
    pool: asyncpg.Pool,
) -> None:
    async with running(ProjectorWorker(pool, ALL, poll_interval=5.0)):
        user = await register(pool, grant=10)
        created = await done(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
        # The worker wakes on NOTIFY (the poll interval is far longer than this bound).
        assert await wait_for(pool, created.checkpoint, NAMES, timeout=10)
        async with pool.acquire() as conn:
            me = await queries.user(conn, user)
            assert me is not None and me.balance_rcc == 5
            job = await queries.job(conn, str(created.result["job_id"]), user)
            assert job is not None and job.status == "created" and job.cost_rcc == 5
            lines = await queries.ledger_page(conn, user)
            assert [e.reason for e in lines.items] == ["JOB_RESERVE", "TOPUP_GRANT"]
        failed = await done(
            pool, c.MarkJob(job_id=str(created.result["job_id"]), status="failed", error="x")
        )
        assert await wait_for(pool, failed.checkpoint, ["balances", "jobs"], timeout=10)
        async with pool.acquire() as conn:
            wallet = await queries.balance(conn, user)
            assert wallet is not None
            assert (wallet.balance_rcc, wallet.lifetime_consumed, wallet.jobs_in_flight) == (
                10,
                0,
                0,
            )


async def test_wait_for_reports_a_timeout_when_no_projector_runs(pool: asyncpg.Pool) -> None:
    user = await register(pool)
    granted = await done(pool, c.GrantCredits(user_id=user, kind="topup", amount=3))
    assert not await wait_for(pool, granted.checkpoint, ["balances"], timeout=0.05)
    assert await wait_for(pool, Checkpoint(), ["balances"], timeout=0.05)  # nothing written
    await drain(pool)
    assert await wait_for(pool, granted.checkpoint, ["balances"], timeout=0.05)


async def test_a_handler_error_mid_batch_leaves_rows_and_checkpoints_untouched(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await register(pool, grant=5)
    await drain(pool)
    before = await dump(owner)
    stored = await checkpoints.load(owner, NAMES)
    await done(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"))
    await settle(pool)  # the batch below must see the new events

    def explode(batch: Any, event: Any, record: RecordedEvent) -> None:
        raise RuntimeError("handler failed")

    jobs = next(p for p in ALL if p.name == "jobs")
    broken = Projection(jobs.name, jobs.tables, jobs.new_batch, {object: explode}, jobs.flush)
    with pytest.raises(RuntimeError, match="handler failed"):
        async with pool.acquire() as conn:
            await follow_batch(conn, [p if p.name != "jobs" else broken for p in ALL])
    assert await dump(owner) == before
    assert await checkpoints.load(owner, NAMES) == stored
    assert await drain(pool) == 2  # the reserve and the job, applied once the fault is gone


async def test_a_worker_survives_a_failing_batch_and_retries(pool: asyncpg.Pool) -> None:
    failures = 0

    async def flaky_flush(conn: asyncpg.Connection, batch: Any) -> None:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise RuntimeError("transient")
        await balances.flush(conn, batch)

    balances = next(p for p in ALL if p.name == "balances")
    flaky = Projection(
        balances.name, balances.tables, balances.new_batch, balances.handlers, flaky_flush
    )
    user = await register(pool, grant=7)
    async with running(ProjectorWorker(pool, [flaky], poll_interval=0.05)):
        async with pool.acquire() as conn:
            last = (await conn.fetchrow("SELECT max(position) AS p FROM events"))["p"]
        async with asyncio.timeout(20):
            while True:
                async with pool.acquire() as conn:
                    row = await queries.balance(conn, user)
                if row is not None and row.last_position == last:
                    break
                await asyncio.sleep(0.05)
    assert failures == 2 and row.balance_rcc == 7


@dataclass
class Probe:
    """A test projection that records which worker applied which position."""

    worker: str
    positions: list[int] = field(default_factory=list)

    def projection(self) -> Projection[list[int]]:
        def on_any(batch: list[int], event: Any, record: RecordedEvent) -> None:
            batch.append(record.position)

        async def flush(conn: asyncpg.Connection, batch: list[int]) -> None:
            await conn.execute(
                "INSERT INTO probe_applied SELECT unnest($1::bigint[]), $2", batch, self.worker
            )

        return Projection("probe", ("probe_applied",), list, {object: on_any}, flush)


async def test_two_workers_at_once_never_apply_the_same_event_twice(
    pool: asyncpg.Pool, owner: asyncpg.Connection, db_url: str
) -> None:
    # No unique key here on purpose: a doubled event would show up as a second row.
    await owner.execute("CREATE TABLE probe_applied (position bigint NOT NULL, worker text)")
    await owner.execute("GRANT SELECT, INSERT ON probe_applied TO rcc_app")
    pools = [await create_pool(db_url, min_size=1, max_size=3) for _ in range(2)]
    workers = [
        ProjectorWorker(p, [Probe(f"w{i}").projection()], batch_size=7, poll_interval=0.02)
        for i, p in enumerate(pools)
    ]
    try:
        async with running(workers[0]), running(workers[1]):
            users = [await register(pool, grant=50) for _ in range(4)]

            async def writer(user: str) -> None:
                for _ in range(15):
                    job = await done(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"))
                    await done(pool, c.MarkJob(job_id=str(job.result["job_id"]), status="running"))

            await asyncio.gather(*(writer(u) for u in users))
            total = await owner.fetchval("SELECT count(*) FROM events")
            async with asyncio.timeout(30):
                while True:
                    if await owner.fetchval("SELECT count(*) FROM probe_applied") >= total:
                        break
                    await asyncio.sleep(0.05)
    finally:
        for p in pools:
            await p.close()
    counts = await owner.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT position) AS distinct_n FROM probe_applied"
    )
    assert counts["n"] == counts["distinct_n"] == total
    assert (
        await owner.fetchval(
            "SELECT count(*) FROM events WHERE position NOT IN (SELECT position FROM probe_applied)"
        )
        == 0
    )


async def test_status_reports_checkpoint_and_lag(pool: asyncpg.Pool) -> None:
    await register(pool, grant=4)
    async with pool.acquire() as conn:
        before = {s.name: s for s in await status(conn)}
    assert set(before) == set(NAMES)
    assert all(s.lag_events == 3 and s.lag_seconds >= 0 for s in before.values())
    assert all(s.checkpoint == Checkpoint() for s in before.values())
    await drain(pool)
    async with pool.acquire() as conn:
        after = await status(conn)
        head = await conn.fetchval("SELECT max(position) FROM events")
    assert all(s.lag_events == 0 and s.lag_seconds == 0 for s in after)
    assert all(s.checkpoint.position == head for s in after)


async def test_events_behind_a_running_transaction_wait_and_the_holder_is_named(
    pool: asyncpg.Pool,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("rcc.follower.worker.STALL_WARNING", 0.05)
    user = await register(pool, grant=1)
    holder = await asyncpg.connect(db_url)
    tx = holder.transaction()
    await tx.start()
    await holder.execute("SELECT pg_current_xact_id()")  # an xid older than what follows
    try:
        later = await done(pool, c.GrantCredits(user_id=user, kind="topup", amount=2))
        async with running(ProjectorWorker(pool, ALL, poll_interval=0.05)):
            async with asyncio.timeout(30):
                while True:  # the worker waits for the holder, and says who it is
                    if "held back" in caplog.text:
                        break
                    await asyncio.sleep(0.02)
            # (the oldest writer on the whole server: ours, unless another database's is older)
            assert "by an older running transaction: pid " in caplog.text
            assert not await wait_for(pool, later.checkpoint, NAMES, timeout=0.1)
            await tx.commit()
            assert await wait_for(pool, later.checkpoint, NAMES, timeout=30)
    finally:
        await holder.close()
    async with pool.acquire() as conn:
        wallet = await queries.balance(conn, user)
    assert wallet is not None and wallet.balance_rcc == 3
