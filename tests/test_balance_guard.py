"""The database refuses a wallet head below zero by itself, behind the Python rule."""

from __future__ import annotations

import asyncpg
import msgspec
import pytest

from rcc.domain.events import CreditsAdjusted, encode_data
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.helpers import funded_user, snapshot


async def test_a_superuser_cannot_set_a_wallet_head_below_zero(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await funded_user(pool, 3)
    before = await snapshot(owner)
    with pytest.raises(asyncpg.CheckViolationError, match="streams_wallet_balance_not_negative"):
        await owner.execute(
            """UPDATE streams SET state = jsonb_set(state, '{balance}', '-1')
                WHERE stream_id = $1""",
            f"wallet-{user}",
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await owner.execute(
            """INSERT INTO streams (stream_id, version, last_hash, state)
               VALUES ('wallet-forged', 1, '\\x00', '{"balance": -5}')"""
        )
    assert await snapshot(owner) == before
    # Zero is a balance like any other.
    await owner.execute(
        "UPDATE streams SET state = jsonb_set(state, '{balance}', '0') WHERE stream_id = $1",
        f"wallet-{user}",
    )


async def test_the_service_role_cannot_append_past_the_python_rule(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    # A writer that skips the domain decision (a script, or a bug in a handler) and
    # calls the append function with a debit the wallet cannot cover, as rcc_app.
    user = await funded_user(pool, 3)
    version, state = await owner.fetchrow(
        "SELECT version, state FROM streams WHERE stream_id = $1", f"wallet-{user}"
    )
    overdraft = CreditsAdjusted(amount=-4, actor="script", note="overdraw")
    type_, data = encode_data(overdraft)
    forged = msgspec.json.encode({**state, "balance": state["balance"] - 4}).decode()
    before = await snapshot(owner)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.fetch(
                "SELECT * FROM rcc_append_v1($1, $2, $3, $4, $5, $6, $7)",
                [f"wallet-{user}"],
                [version],
                [forged],
                [1],
                [type_],
                [data.decode()],
                "{}",
            )
    assert await snapshot(owner) == before


async def test_admin_bypass_still_runs_jobs_on_an_empty_wallet(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    admin = await funded_user(pool, 0, admin=True)
    done = await execute(pool, c.CreateJob(user_id=admin, job_type="VIDEO_TASK"))
    assert isinstance(done, Done) and done.result["bypass"] is True
    state = await owner.fetchval(
        "SELECT state FROM streams WHERE stream_id = $1", f"wallet-{admin}"
    )
    assert state["balance"] == 0 and state["open_jobs"] == 1
    # And a job that spends a wallet down to exactly zero is allowed by the guard.
    user = await funded_user(pool, 5)
    spent = await execute(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
    assert isinstance(spent, Done) and spent.result["balance_rcc"] == 0
