"""The check behind a lost COMMIT reply (rcc.store.outcome), each case on the real server:
committed, never committed (and fenced, so it cannot commit later), still in progress
(the check waits for it), and a database that cannot be reached (bounded, then
OutcomeUnknown)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from rcc.store.database import create_pool
from rcc.store.outcome import OutcomeUnknown, committed, new_command_id, record_and_commit
from tests.serve_helpers import free_port


async def test_a_committed_command_is_found(pool: asyncpg.Pool) -> None:
    command = new_command_id()
    async with pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute(record_and_commit(command))
    assert await committed(pool, command) is True
    assert await committed(pool, command) is True, "asking again changes nothing"


async def test_a_command_that_never_committed_is_fenced_and_cannot_commit_later(
    pool: asyncpg.Pool,
) -> None:
    command = new_command_id()
    async with pool.acquire() as late:
        await late.execute("BEGIN")  # its COMMIT is "still travelling" when we check
        assert await committed(pool, command) is False
        with pytest.raises(asyncpg.UniqueViolationError):
            await late.execute(record_and_commit(command))
        await late.execute("ROLLBACK")
    assert await committed(pool, command) is False, "an earlier check's fence says so"


async def test_a_command_still_in_progress_is_waited_for(pool: asyncpg.Pool) -> None:
    command = new_command_id()
    async with pool.acquire() as slow:
        await slow.execute("BEGIN")
        await slow.execute("INSERT INTO command_ids (id) VALUES ($1)", command)
        check = asyncio.create_task(committed(pool, command))
        await asyncio.sleep(0.3)
        assert not check.done(), "the check waits for the transaction to end"
        await slow.execute("COMMIT")
        assert await asyncio.wait_for(check, timeout=10) is True


async def test_an_unreachable_database_gives_outcome_unknown_in_bounded_time() -> None:
    # Nothing listens on that port: every attempt is refused until the bound.
    nowhere = await create_pool(f"postgresql://rcc@127.0.0.1:{free_port()}/rcc", min_size=0)
    try:
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown):
            await committed(nowhere, new_command_id(), within_s=0.6)
        assert 0.5 <= time.monotonic() - started < 5
    finally:
        await nowhere.close()
