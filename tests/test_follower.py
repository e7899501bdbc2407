"""The follower runtime in one process on real PostgreSQL: an unknown event type stops
every follower just before it (a known one a follower ignores does not), a blocked
worker polls slowly whatever is notified, and upcasters keep old shapes decoding."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from projections import queries
from projections.registry import ALL, NAMES
from rcc.domain.events import UPCASTERS, Event, TopupGranted, decode_event, wallet_stream
from rcc.follower import checkpoints
from rcc.follower.batch import follow_batch
from rcc.follower.status import status
from rcc.projector.replay import ReplayBlocked, replay
from rcc.projector.runtime import ProjectorWorker
from rcc.store.database import connect_owner
from rcc.store.event_store import StreamWrite, append
from rcc.store.migrations import SCHEMA_DIR, migrate
from tests.newer_version import ORG_OPENED, OrgOpened, write_newer_event
from tests.projection_helpers import differences, drain, dump, register, settle
from tests.serve_helpers import create_database, drop_database


@contextlib.asynccontextmanager
async def running(worker: ProjectorWorker) -> AsyncIterator[ProjectorWorker]:
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 30)


async def last_position(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT max(position) FROM events"))


async def test_an_unknown_type_stops_every_projection_before_it_until_an_upgrade(
    pool: asyncpg.Pool, owner: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await register(pool, grant=2)
    async with pool.acquire() as conn:
        before_unknown = await last_position(conn)
    newer = await write_newer_event(pool, "o1")
    second = await register(pool, grant=3)  # after the unknown event: must wait for it
    await settle(pool)

    async with pool.acquire() as conn:
        result = await follow_batch(conn, ALL)
    assert result.blocked is not None and result.blocked.checkpoint.position == newer.position
    assert str(result.blocked) == (
        f"blocked at position {newer.position}: unknown event type 'org_opened'"
        " — this version is older than the writer"
    )
    stored = await checkpoints.load(owner, NAMES)
    # Every projection stopped just before it, including `models`, which handles none of
    # the user and wallet events before it: a known type it ignores does not hold it.
    assert {c.position for c in stored.values()} == {before_unknown}
    async with pool.acquire() as conn:
        assert await queries.user(conn, first) is not None
        assert await queries.user(conn, second) is None
        found = {s.name: s for s in await status(conn)}
        again = await follow_batch(conn, ALL)  # still there: nothing moves
    assert again.events == 0 and again.blocked == result.blocked
    assert set(found) == set(NAMES)
    assert all(s.blocked == str(result.blocked) for s in found.values())
    assert all(s.lag_events > 0 and s.blocked_since is not None for s in found.values())
    with pytest.raises(ReplayBlocked, match="org_opened"):
        await replay(owner, ALL)  # an old version cannot rebuild what it cannot read

    upgrade_types(monkeypatch)
    await drain(pool)
    async with pool.acquire() as conn:
        assert await queries.user(conn, second) is not None
        assert all(s.blocked is None and s.lag_events == 0 for s in await status(conn))
    projected = await dump(owner)
    await replay(owner, ALL)
    assert await dump(owner) == projected, differences(projected, await dump(owner))


def upgrade_types(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process becomes the newer version (undone after the test)."""
    from rcc.domain import events

    monkeypatch.setitem(events.EVENT_CLASSES, ORG_OPENED, OrgOpened)


async def test_a_blocked_worker_polls_slowly_whatever_is_notified(
    pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    await write_newer_event(pool, "o2")
    worker = ProjectorWorker(pool, ALL, poll_interval=0.01, blocked_poll_interval=60.0)
    async with running(worker):
        async with asyncio.timeout(30):
            while True:
                if worker.blocked is not None:
                    break
                await asyncio.sleep(0.01)
        reads = worker.batches
        for _ in range(10):  # each commits and NOTIFYs rcc_events
            await register(pool, grant=1)
        await asyncio.sleep(0.5)
        assert worker.batches == reads  # woken ten times, read nothing: no busy loop
    assert caplog.text.count("unknown event type 'org_opened'") == 1


class OldTopup(Event, frozen=True, kw_only=True, tag="topup_granted_v0"):
    """A synthetic old shape: what a top-up looked like before `amount` and `ref`."""

    credits: int
    receipt: str


def old_topup_to_current(data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "topup_granted", {"amount": data["credits"], "ref": data["receipt"]}


async def test_an_upcaster_brings_an_old_shape_to_the_current_one_before_decoding(
    pool: asyncpg.Pool, owner: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await register(pool, grant=2)
    async with pool.acquire() as conn, conn.transaction():
        old = OldTopup(credits=40, receipt="r-1")
        await append(
            conn, [StreamWrite(stream_id=wallet_stream(user), expected_version=-1, events=[old])]
        )
    await settle(pool)
    async with pool.acquire() as conn:
        blocked = await follow_batch(conn, ALL)  # no upcaster yet: an unknown type
    assert blocked.blocked is not None and blocked.blocked.type == "topup_granted_v0"

    monkeypatch.setitem(UPCASTERS, "topup_granted_v0", old_topup_to_current)
    stored = await owner.fetchrow("SELECT type, data FROM events WHERE type = 'topup_granted_v0'")
    assert decode_event(stored["type"], stored["data"]) == TopupGranted(amount=40, ref="r-1")
    await drain(pool)
    async with pool.acquire() as conn:
        wallet = await queries.balance(conn, user)
    assert wallet is not None and wallet.balance_rcc == 42
    projected = await dump(owner)
    await replay(owner, ALL)
    assert await dump(owner) == projected


async def test_0010_moves_the_adapter_checkpoint_over_as_it_stands(
    server_url: str, tmp_path: Path
) -> None:
    before_0010 = tmp_path / "schema"
    before_0010.mkdir()
    for path in SCHEMA_DIR.glob("*.sql"):
        if int(path.name[:4]) < 10:
            shutil.copy(path, before_0010 / path.name)
    url = await create_database(server_url, "template0")
    conn = await connect_owner(url)
    try:
        await migrate(conn, before_0010)
        await conn.execute(
            """INSERT INTO adapter_checkpoints (name, tx_id, position)
               VALUES ('comfy_adapter', '4321', 99)"""
        )
        await conn.execute("UPDATE projection_checkpoints SET position = 7 WHERE name = 'jobs'")
        assert 10 in await migrate(conn)
        rows = await conn.fetch(
            """SELECT name, kind, tx_id::text::bigint AS tx_id, position
                 FROM follower_checkpoints ORDER BY name"""
        )
        moved = {r["name"]: (r["kind"], r["tx_id"], r["position"]) for r in rows}
        assert moved.pop("adapter:comfy_adapter") == ("subscriber", 4321, 99)
        assert moved == {n: ("projection", 0, 7 if n == "jobs" else 0) for n in NAMES}
        assert await conn.fetchval("SELECT to_regclass('adapter_checkpoints')") is None
        view = await conn.fetch("SELECT name FROM projection_checkpoints ORDER BY name")
        assert [r["name"] for r in view] == sorted(NAMES)
    finally:
        await conn.close()
        await drop_database(server_url, url)
