"""Lots as rows (`wallet_lots`, h9): a reserve reads only the front lots and rewrites only
the rows it draws from, yet every draw is the one the pure domain takes on all lots, and
the rows always equal the lots folded from the events."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from rcc.audit import verify
from rcc.bench.ledger import fund_in_lots
from rcc.domain import wallet as wallets
from rcc.domain.events import (
    CreditsReleased,
    CreditsReserved,
    SubscriptionLotSuperseded,
    decode_event,
)
from rcc.domain.lots import RELEASE_GRACE, LotPolicy, drawable, plan_draws, to_us
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.service.hold_commands import AuthorizeHold, RecordUsage
from rcc.store.heads import read_head
from rcc.store.time_travel import wallet_as_of
from rcc.store.wallet_lots import FRONT_LOTS, wider

MIGRATION = Path(__file__).resolve().parents[1] / "schema" / "0026_wallet_lots.sql"


async def _done(pool: asyncpg.Pool, cmd: c.Command) -> Done:
    outcome = await execute(pool, cmd)
    assert isinstance(outcome, Done), outcome
    return outcome


async def _user(pool: asyncpg.Pool) -> str:
    done = await _done(pool, c.RegisterUser(email=f"{uuid.uuid4().hex}@x.io"))
    return str(done.result["user_id"])


async def _rows(owner: asyncpg.Connection, user: str) -> dict[str, tuple[list[Any], int]]:
    """The wallet's rows as lot arrays, with the transaction that last wrote each."""
    stream = f"wallet-{user}"
    lots = (await read_head(owner, stream)).state["lots"]
    rows = await owner.fetch(
        "SELECT lot_id, xmin::text::bigint AS xmin FROM wallet_lots WHERE stream_id = $1", stream
    )
    by_id = {lot[0]: lot for lot in lots}
    return {r["lot_id"]: (by_id[r["lot_id"]], r["xmin"]) for r in rows}


async def _rows_equal_the_fold(owner: asyncpg.Connection, user: str) -> wallets.WalletState:
    """The table and the head together equal the wallet folded from its events alone."""
    folded = await wallet_as_of(owner, user)
    head = await read_head(owner, f"wallet-{user}")
    assert head.as_state(wallets.WalletState) == folded
    small = await owner.fetchval("SELECT state FROM streams WHERE stream_id = $1", f"wallet-{user}")
    assert small.get("lots", []) == []  # the head keeps only the sums
    return folded


async def _draws_follow_all_lots(owner: asyncpg.Connection, user: str) -> int:
    """Every reserve drew exactly what the pure domain draws from every lot the wallet
    had then (not only the front ones). Returns how many reserves there were."""
    rows = await owner.fetch(
        "SELECT type, data, recorded_at FROM events WHERE stream_id = $1 ORDER BY version",
        f"wallet-{user}",
    )
    state, reserves = wallets.WalletState(), 0
    for row in rows:
        event = decode_event(row["type"], row["data"])
        if isinstance(event, CreditsReserved):
            order = drawable(state.lots, to_us(row["recorded_at"]))
            assert event.draws == tuple(plan_draws(order, event.amount)[0])
            reserves += 1
        state = wallets.evolve(state, event)
    return reserves


async def test_a_reserve_on_300_lots_rewrites_only_the_row_it_draws(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await _user(pool)
    await fund_in_lots(pool, user, 300)  # 300 lots, the soonest expiry made first
    assert len(await _rows(owner, user)) == 300
    assert (
        await owner.fetchval(
            "SELECT pg_column_size(state) FROM streams WHERE stream_id = $1", f"wallet-{user}"
        )
        < 1000
    )  # it was about 20 kB with the lots inside
    before = await _rows(owner, user)
    job = await _done(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
    after = await _rows(owner, user)
    changed = {lot for lot in after if after[lot] != before[lot]}
    assert changed == {"L1"}  # the soonest expiry, drawn; 299 rows untouched
    assert after["L1"][0][3] == before["L1"][0][3] - 5
    await _rows_equal_the_fold(owner, user)
    # The job fails: its credits go back to the same row.
    job_id = str(job.result["job_id"])
    await _done(pool, c.MarkJob(job_id=job_id, status="failed", error="gpu lost"))
    ended = await _rows(owner, user)
    assert ended["L1"][0] == before["L1"][0]
    assert {lot for lot in ended if ended[lot] != before[lot]} == {"L1"}
    await _rows_equal_the_fold(owner, user)
    assert await _draws_follow_all_lots(owner, user) == 1
    report = await verify(owner)
    assert report.ok, report.problems


async def test_a_job_ending_after_its_month_was_superseded_sees_the_lot_ended(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    """A job's end loads only the rows it drew from: a month's lot the next month ended
    early must say so in its row (kept while the job pins it), or the release would go
    back into the ended lot (the audit's 'returned to after it expired')."""
    user = await _user(pool)
    month = c.GrantCredits(user_id=user, kind="subscription", amount=50, ref="m1", lots=LotPolicy())
    await _done(pool, month)
    job = await _done(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
    await _done(pool, msgspec.structs.replace(month, ref="m2"))  # L1 ends now, L2 begins
    *_, ended, granted = await _events(owner, user)
    assert isinstance(ended, SubscriptionLotSuperseded) and ended.lot == "L1"
    assert ended.expires_at is not None and granted.lot == "L2"
    rows = await _rows(owner, user)
    l1 = rows["L1"][0]  # exhausted, pinned by the job, ended at the supersession
    assert (l1[3], l1[6]) == (0, to_us(ended.expires_at))
    await _rows_equal_the_fold(owner, user)
    await _done(pool, c.MarkJob(job_id=str(job.result["job_id"]), status="failed"))
    released = (await _events(owner, user))[-1]
    assert isinstance(released, CreditsReleased)
    assert released.draws == () and released.relot == "L3"  # a new lot, not into L1
    assert released.at is not None and released.relot_expires_at == released.at + RELEASE_GRACE
    rows = await _rows(owner, user)
    assert set(rows) == {"L2", "L3"}  # L1, no longer pinned, has left the table
    assert rows["L3"][0][3] == 5
    await _rows_equal_the_fold(owner, user)
    report = await verify(owner)
    assert report.ok, report.problems


async def _events(owner: asyncpg.Connection, user: str) -> list[Any]:
    """The wallet's events, decoded, oldest first."""
    rows = await owner.fetch(
        "SELECT type, data FROM events WHERE stream_id = $1 ORDER BY version", f"wallet-{user}"
    )
    return [decode_event(row["type"], row["data"]) for row in rows]


async def _front_expired(pool: asyncpg.Pool) -> tuple[str, int]:
    """A wallet whose first lots in spending order (more than the front and the next
    one) have just expired, with no expiry run yet, behind an undated lot of 7 RCC:
    its id and how many lots expired."""
    user = await _user(pool)
    soon = datetime.now(UTC) + timedelta(seconds=3)
    expiring = (wider(FRONT_LOTS) or 0) + 2
    for _ in range(expiring):
        await _done(
            pool,
            c.PatchUser(user_id=user, actor="admin", rcc_delta=1, note="promo", expires_at=soon),
        )
    undated = LotPolicy(topup_days=None)
    await _done(pool, c.GrantCredits(user_id=user, kind="topup", amount=7, lots=undated))
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.1)
    return user, expiring


async def test_when_the_front_lots_have_expired_the_reserve_reads_wider_fronts(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user, expiring = await _front_expired(pool)
    # The front rows still have credits, none of them drawable.
    done = await _done(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
    assert done.result["cost_rcc"] == 5
    rows = await _rows(owner, user)
    topup = f"L{expiring + 1}"
    assert rows[topup][0][3] == 2
    assert sum(rows[f"L{n}"][0][3] for n in range(1, expiring + 1)) == expiring
    # And a reserve that nothing live can cover is refused with what can be spent.
    refused = await execute(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
    assert getattr(refused, "balance_rcc", None) == 2, refused
    await _rows_equal_the_fold(owner, user)
    assert await _draws_follow_all_lots(owner, user) == 1


async def test_a_hold_and_a_usage_past_an_expired_front_write_the_lots_they_drew(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    """Their events were decided on the wider load; folded onto the first load, the
    draws from the lot behind the front were lost from the rows (the lots stateful
    test found a balance of 0 where the events left 2)."""
    user, expiring = await _front_expired(pool)
    held = AuthorizeHold(wallet_id=user, amount=4, timeout_s=60, reason="r", service="svc")
    await _done(pool, held)
    await _rows_equal_the_fold(owner, user)
    await _done(pool, RecordUsage(wallet_id=user, amount=2, reason="r", service="svc"))
    folded = await _rows_equal_the_fold(owner, user)
    assert (await _rows(owner, user))[f"L{expiring + 1}"][0][3] == 1
    assert folded.balance == 1 + expiring  # the expired lots still count until expired


async def test_grouped_reserves_on_one_wallet_draw_as_if_alone(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await _user(pool)
    await fund_in_lots(pool, user, 60, each=3)  # 180 RCC in 60 small lots
    # 80 jobs of 5 RCC at once on one wallet: the group commit decides many in one
    # transaction, each reserve spanning two lots, until the lots run out.
    outcomes = await asyncio.gather(
        *(execute(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK")) for _ in range(80))
    )
    accepted = sum(isinstance(o, Done) for o in outcomes)
    folded = await _rows_equal_the_fold(owner, user)
    assert await _draws_follow_all_lots(owner, user) == accepted > 0
    assert accepted == 36 and folded.balance == 0
    report = await verify(owner)
    assert report.ok, report.problems


async def test_the_migration_moves_lots_out_of_existing_heads(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = await _user(pool)
    await fund_in_lots(pool, user, 5)
    await _done(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
    moved = await _rows(owner, user)
    # The wallet as it was before 0026: its lots inside the head, no rows.
    whole = (await read_head(owner, f"wallet-{user}")).state
    await owner.execute(
        "UPDATE streams SET state = $2 WHERE stream_id = $1", f"wallet-{user}", whole
    )
    await owner.execute("DELETE FROM wallet_lots WHERE stream_id = $1", f"wallet-{user}")
    move = MIGRATION.read_text().split("-- Existing wallets")[1].split("\n", 1)[1]
    await owner.execute(move)
    assert {k: v[0] for k, v in (await _rows(owner, user)).items()} == {
        k: v[0] for k, v in moved.items()
    }
    await _rows_equal_the_fold(owner, user)
