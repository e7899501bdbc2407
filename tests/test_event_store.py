"""The event store's own guarantees on real PostgreSQL: versions, atomicity, immutability."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from rcc.domain import wallet as wallets
from rcc.domain.events import SignupGranted, TopupGranted, WalletOpened
from rcc.store import event_store as es
from rcc.store.event_store import StreamVersionConflict, StreamWrite
from rcc.store.time_travel import wallet_as_of


def _open(wallet: str) -> StreamWrite:
    return StreamWrite(
        stream_id=f"wallet-{wallet}",
        expected_version=0,
        events=[WalletOpened(wallet_id=wallet, owner_kind="user", owner_id=wallet)],
    )


async def test_append_and_read_stream_in_version_order(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await es.append(conn, [_open("w1")])
        await es.append(
            conn,
            [
                StreamWrite(
                    stream_id="wallet-w1",
                    expected_version=1,
                    events=[TopupGranted(amount=5), TopupGranted(amount=7)],
                )
            ],
        )
    async with pool.acquire() as conn:
        events = await es.read_stream(conn, "wallet-w1")
        assert [e.version for e in events] == [1, 2, 3]
        assert [e.decode() for e in events][1:] == [TopupGranted(amount=5), TopupGranted(amount=7)]
        assert [e.version for e in await es.read_stream(conn, "wallet-w1", from_version=3)] == [3]


async def test_stale_expected_version_is_a_conflict_and_writes_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            await es.append(conn, [_open("w1"), _open("w2")])
        stale = [
            StreamWrite(stream_id="wallet-w1", expected_version=1, events=[TopupGranted(amount=1)]),
            StreamWrite(stream_id="wallet-w2", expected_version=0, events=[TopupGranted(amount=1)]),
        ]
        with pytest.raises(StreamVersionConflict, match="wallet-w2 is at version 1, expected 0"):
            async with conn.transaction():
                await es.append(conn, stale)
        # Atomic across streams: the fresh half of the write was not kept either.
        assert await conn.fetchval("SELECT count(*) FROM events") == 2
        assert await conn.fetchval("SELECT max(version) FROM streams") == 1


async def test_two_creators_of_one_new_stream_one_wins(pool: asyncpg.Pool) -> None:
    async def create() -> bool:
        async with pool.acquire() as conn:
            try:
                async with conn.transaction():
                    await es.append(conn, [_open("same")])
                    await asyncio.sleep(0.05)
                return True
            except StreamVersionConflict:
                return False

    results = await asyncio.gather(*(create() for _ in range(8)))
    assert sorted(results) == [False] * 7 + [True]


@pytest.mark.parametrize(
    "statement",
    ["UPDATE events SET type = 'x'", "DELETE FROM events", "TRUNCATE events"],
)
async def test_events_cannot_be_changed_even_by_the_owner(
    pool: asyncpg.Pool, owner: asyncpg.Connection, statement: str
) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await es.append(conn, [_open("w1")])
    with pytest.raises(asyncpg.PostgresError, match="events are immutable"):
        await owner.execute(statement)
    # The service's own role is refused by its grants before any trigger runs.
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    assert await owner.fetchval("SELECT count(*) FROM events") == 1


async def test_hash_chain_links_each_event_to_the_previous(pool: asyncpg.Pool) -> None:
    from rcc.store.hashing import GENESIS

    async with pool.acquire() as conn:
        async with conn.transaction():
            await es.append(conn, [_open("w1")])
        async with conn.transaction():
            await es.append(
                conn,
                [
                    StreamWrite(
                        stream_id="wallet-w1", expected_version=1, events=[SignupGranted(amount=2)]
                    )
                ],
            )
        rows = await conn.fetch(
            """SELECT hash,
                      rcc_event_hash_v1($1, stream_id, version, type, data, metadata, recorded_at)
                      AS first
                 FROM events ORDER BY version""",
            GENESIS,
        )
        head = await conn.fetchval("SELECT last_hash FROM streams WHERE stream_id = 'wallet-w1'")
    assert rows[0]["hash"] == rows[0]["first"]
    assert rows[1]["hash"] != rows[1]["first"]  # chained to v1, not to the genesis
    assert head == rows[1]["hash"]


async def test_wallet_state_as_of_position_and_time(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        async with conn.transaction():
            await es.append(conn, [_open("w1")])
        moments = []
        for version, amount in enumerate([3, 4, 5], start=1):
            async with conn.transaction():
                [done] = await es.append(
                    conn,
                    [
                        StreamWrite(
                            stream_id="wallet-w1",
                            expected_version=version,
                            events=[TopupGranted(amount=amount)],
                        )
                    ],
                )
            moments.append((done.position, datetime.now(UTC)))
            await asyncio.sleep(0.01)
        for (position, moment), expected in zip(moments, [3, 7, 12], strict=True):
            assert (await wallet_as_of(conn, "w1", position=position)).balance == expected
            assert (await wallet_as_of(conn, "w1", at=moment)).balance == expected
        before = await wallet_as_of(conn, "w1", at=datetime(2000, 1, 1, tzinfo=UTC))
        assert before == wallets.WalletState()
