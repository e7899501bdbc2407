"""Credit lots on the real store: expiry racing 200 jobs, and wallets from before lots."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import msgspec

from projections.registry import ALL
from rcc.audit import verify
from rcc.domain import job as jobs
from rcc.domain import user as users
from rcc.domain import wallet as wallets
from rcc.domain.events import (
    CreditsExpired,
    CreditsReleased,
    CreditsReserved,
    JobCreated,
    LotsOpened,
    SignupGranted,
    TopupGranted,
    UserRegistered,
    WalletOpened,
    decode_event,
    encode_data,
)
from rcc.domain.lots import LotPolicy
from rcc.projector.replay import replay
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.expiry_scheduler import ExpiryScheduler
from rcc.service.handlers import Done
from rcc.store.heads import read_head
from rcc.store.time_travel import wallet_as_of
from tests.helpers import balance_of
from tests.projection_helpers import drain, dump


async def _done(pool: asyncpg.Pool, cmd: c.Command, **kwargs: Any) -> Done:
    outcome = await execute(pool, cmd, **kwargs)
    assert isinstance(outcome, Done), outcome
    return outcome


async def _wallet_events(conn: asyncpg.Connection, user: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT type, data, recorded_at FROM events WHERE stream_id = $1 ORDER BY version",
        f"wallet-{user}",
    )


async def test_200_jobs_racing_a_lots_expiry_never_draw_after_it(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user = str(
        (await _done(pool, c.RegisterUser(email=f"{uuid.uuid4().hex}@x.io"))).result["user_id"]
    )
    expires = datetime.now(UTC) + timedelta(seconds=3)
    patched = c.PatchUser(
        user_id=user, actor="admin", rcc_delta=150, note="promo", expires_at=expires
    )
    await _done(pool, patched)  # L1: 150 RCC until `expires`
    undated = LotPolicy(topup_days=None)
    await _done(pool, c.GrantCredits(user_id=user, kind="topup", amount=40, lots=undated))
    # Two schedulers tick throughout; 200 one-RCC jobs arrive spread over the instant.
    stop = asyncio.Event()
    schedulers = [ExpiryScheduler(pool, interval_s=0.02, stop_event=stop) for _ in range(2)]
    ticking = [asyncio.create_task(s.run()) for s in schedulers]

    async def job(n: int) -> bool:
        await asyncio.sleep(
            max(0.0, (expires - datetime.now(UTC)).total_seconds() - 1.6 + n * 0.01)
        )
        outcome = await execute(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"))
        return isinstance(outcome, Done)

    accepted = sum(await asyncio.gather(*(job(n) for n in range(200))))
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.3)
    stop.set()
    await asyncio.gather(*ticking)

    rows = await _wallet_events(owner, user)
    drawn_from_l1, expiries = 0, []
    for row in rows:
        event = decode_event(row["type"], row["data"])
        if isinstance(event, CreditsReserved):
            for lot, n in event.draws:
                if lot == "L1":
                    assert row["recorded_at"] < expires, "a draw after the lot expired"
                    drawn_from_l1 += n
        elif isinstance(event, CreditsExpired):
            expiries.append(event)
    assert accepted <= 190  # 150 in L1 (some expired), 40 in L2
    assert [(e.lot, e.amount) for e in expiries] == [("L1", 150 - drawn_from_l1)]
    assert 0 < drawn_from_l1 < 150, "the race straddled the instant"
    assert accepted > drawn_from_l1  # some jobs came after the instant and drew from L2
    balance = await balance_of(owner, user)
    assert balance == 40 - (accepted - drawn_from_l1)
    report = await verify(owner)
    assert report.ok, report.problems


# --- a database filled by the version before lots --------------------------------


def _old(event: Any, *new_fields: str) -> tuple[str, str]:
    """The event as the version before lots stored it (without the fields lots added)."""
    type_, data = encode_data(event)
    fields = msgspec.json.decode(data)
    for name in new_fields:
        fields.pop(name, None)
    return type_, msgspec.json.encode(fields).decode()


async def _old_shape_user(owner: asyncpg.Connection) -> tuple[str, str]:
    """A user with 30 RCC granted and one open 3-RCC job, as the old version wrote them."""
    user, job = str(uuid.uuid4()), str(uuid.uuid4())
    registered = UserRegistered(user_id=user, email=f"{user[:8]}@old.io", wallet_id=user)
    created = JobCreated(
        job_id=job, user_id=user, wallet_id=user, job_type="IMAGE_TASK", cost_rcc=3, bypass=False
    )
    wallet = [
        _old(WalletOpened(wallet_id=user, owner_kind="user", owner_id=user), "lots"),
        _old(SignupGranted(amount=10), "lot", "priority", "expires_at", "at"),
        _old(
            TopupGranted(amount=20, ref="pay-1", pack="p"),
            "lot",
            "priority",
            "expires_at",
            "at",
        ),
        _old(CreditsReserved(job=job, amount=3), "draws"),
    ]
    old_wallet_state = {
        "wallet_id": user, "owner_kind": "user", "owner_id": user,
        "balance": 27, "opened": True, "open_jobs": 1,
    }  # fmt: skip
    user_state = msgspec.to_builtins(users.evolve(users.UserState(), registered))
    job_state = msgspec.to_builtins(jobs.evolve(jobs.JobState(), created))
    writes = [
        (f"user-{user}", user_state, [encode_data(registered)]),
        (f"wallet-{user}", old_wallet_state, wallet),
        (f"job-{job}", job_state, [encode_data(created)]),
    ]
    owners, types, datas = [], [], []
    for index, (_, _, events) in enumerate(writes, start=1):
        for type_, data in events:
            owners.append(index)
            types.append(type_)
            datas.append(data if isinstance(data, str) else data.decode())
    await owner.fetch(
        "SELECT * FROM rcc_append_v2($1, $2, $3, $4, $5, $6, $7)",
        [w[0] for w in writes],
        [0, 0, 0],
        [msgspec.json.encode(w[1]).decode() for w in writes],
        owners,
        types,
        datas,
        ["{}"] * len(types),
    )
    await owner.execute(
        "INSERT INTO user_emails (email, user_id) VALUES ($1, $2)", registered.email, user
    )
    return user, job


async def test_wallets_from_before_lots_migrate_replay_and_audit_exactly(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    user, old_job = await _old_shape_user(owner)
    assert (await verify(owner)).ok
    # The first lot-aware command moves the balance into one lot, then acts.
    await _done(pool, c.GrantCredits(user_id=user, kind="topup", amount=5))
    await _done(pool, c.MarkJob(job_id=old_job, status="cancelled", actor="u"))
    await _done(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
    rows = await _wallet_events(owner, user)
    events = [decode_event(r["type"], r["data"]) for r in rows]
    assert events[4] == LotsOpened(lot="L1", amount=27, at=events[4].at)  # type: ignore[union-attr]
    released = next(e for e in events if isinstance(e, CreditsReleased))
    assert released.relot == "L3" and released.relot_expires_at is None
    reserved = [e for e in events if isinstance(e, CreditsReserved)][-1]
    assert reserved.draws == (("L2", 5),)  # the top-up (dated) before the undated lots
    # Replay of the wallet equals its cached head; the audit agrees to the unit.
    head = await read_head(owner, f"wallet-{user}")
    folded = await wallet_as_of(owner, user)
    assert head.as_state(wallets.WalletState) == folded
    assert folded.balance == 27 + 5 + 3 - 5 == await balance_of(owner, user)
    report = await verify(owner)
    assert report.ok, report.problems
    assert report.balances[user] == folded.balance
    # The read models rebuilt from the events equal the ones that followed them live.
    await drain(pool)
    live = await dump(owner)
    await replay(owner, ALL)
    assert await dump(owner) == live
