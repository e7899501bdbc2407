"""The payments read model folds the same whatever batches its events come in.

Events are folded in (tx_id, position) order, but a transaction that took its id early
and appended late records its events after those of a transaction folded after it. Here
a subscription grant takes its id (locking its wallet) and waits; a clawback with the
same reference on another wallet commits meanwhile; then the grant commits. The grant
is folded first but recorded last, and its row must come out the same projected one
event per batch as in a replay that folds both in one batch.
"""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from projections.registry import select
from rcc.domain.events import user_stream
from rcc.follower.batch import follow_batch
from rcc.projector.replay import replay
from rcc.service import commands as c
from tests.projection_helpers import done, drain, register, settle
from tests.webhook_receiver import eventually

PAYMENTS = select(["payments"])


async def grant_is_waiting(owner: asyncpg.Connection) -> bool:
    """Does some backend wait on a lock (the grant, behind the uncommitted expiry rows)?"""
    return bool(
        await owner.fetchval(
            """SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                               WHERE wait_event_type = 'Lock' AND datname = current_database())"""
        )
    )


async def payment_rows(owner: asyncpg.Connection, ref: str) -> list[tuple[object, ...]]:
    rows = await owner.fetch("SELECT * FROM payments WHERE external_ref = $1 ORDER BY id", ref)
    return [tuple(r) for r in rows]


async def test_a_refund_recorded_before_its_payment_folds_the_same_in_any_batches(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    payer, other = await register(pool), await register(pool, grant=5)
    await drain(pool)
    ref = f"ref-{uuid.uuid4().hex[:8]}"
    wallet = await owner.fetchval(
        "SELECT state->>'wallet_id' FROM streams WHERE stream_id = $1", user_stream(payer)
    )
    async with pool.acquire() as blocker:
        held = blocker.transaction()
        await held.start()
        # Uncommitted expiry rows for the lots the grant may create: the grant locks its
        # wallet (taking its transaction id), then waits on them before it appends.
        await blocker.execute(
            """INSERT INTO lot_expiries (wallet_id, lot, expires_at)
               SELECT $1, 'L' || n, now() FROM generate_series(1, 9) AS n
               ON CONFLICT DO NOTHING""",
            wallet,
        )
        grant = asyncio.create_task(
            done(pool, c.GrantCredits(user_id=payer, kind="subscription", amount=9, ref=ref))
        )
        await eventually(lambda: grant_is_waiting(owner))
        await done(pool, c.ClawBack(user_id=other, amount=2, ref=ref))
        await held.rollback()
    await grant
    await settle(pool)
    granted, clawed = await owner.fetch(
        """SELECT tx_id::text::bigint AS tx, position, recorded_at FROM events
            WHERE data->>'ref' = $1 AND type IN ('subscription_granted', 'credits_clawed_back')
            ORDER BY tx_id, position""",
        ref,
    )
    # The grant is folded first yet recorded after the clawback (the case under test).
    assert granted["tx"] < clawed["tx"] and granted["recorded_at"] > clawed["recorded_at"]

    async with pool.acquire() as conn:  # one event per batch, as a projector may see them
        while (await follow_batch(conn, PAYMENTS, limit=1)).events:
            pass
    incremental = await payment_rows(owner, ref)
    await replay(owner, PAYMENTS, batch_size=5000)  # both events in one batch
    replayed = await payment_rows(owner, ref)
    assert replayed == incremental
    statuses = {
        (r["type"], r["status"], r["updated_at"] == r["created_at"])
        for r in await owner.fetch("SELECT * FROM payments WHERE external_ref = $1", ref)
    }
    # The subscription is refunded; its row changed no earlier than it was made.
    assert statuses == {("subscription", "refunded", True), ("clawback", "refunded", True)}
