"""Hypothesis drives lots on real PostgreSQL, commands of a step running concurrently.

Each step fires a burst at one wallet, every command in its own transaction: grants
that expire within seconds, undated top-ups, jobs, their ends (releases), clawbacks and
expiry-scheduler ticks; other steps let time pass. The checks recompute every lot from
the wallet's events with a fold written here (not the code under test's):

* no lot ever below zero, nothing drawn from a lot at or after its expiry;
* draws follow the spending order (an earlier lot that was surely drawable is emptied
  before a later one is touched);
* the balance is the sum of the unexpired remainders, now and, through time travel, at
  every past instant the test noted;
* an expiry takes exactly what was left, never early; the audit's lot checks agree;
* holds (h1): service holds authorized, captured (any part), voided and timed out by
  the scheduler in the same bursts, and jobs whose success captures less than they
  held: every hold ends exactly once, a capture never exceeds its hold, and at the end
  every hold has ended (the timeout scheduler voids what was left).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from rcc.audit import verify
from rcc.domain import wallet as wallets
from rcc.domain.events import (
    CreditsAdjusted,
    CreditsClawedBack,
    CreditsExpired,
    CreditsHeld,
    CreditsReleased,
    CreditsReserved,
    GrantEvent,
    HoldReleased,
    HoldSettled,
    decode_event,
)
from rcc.domain.lots import LotPolicy
from rcc.service import commands as c
from rcc.service.bus import execute_alone
from rcc.service.expiry_scheduler import ExpiryScheduler
from rcc.service.handlers import Done
from rcc.service.hold_commands import AuthorizeHold, CaptureHold, VoidHold
from rcc.service.hold_timeout_scheduler import HoldTimeoutScheduler
from rcc.store.heads import read_head
from rcc.store.time_travel import wallet_as_of

T = TypeVar("T")
GUARD = timedelta(seconds=1)  # the product's rule: a lot is not drawn in its last second
UNDATED = LotPolicy(topup_days=None, signup_days=None)

OPS = st.one_of(
    st.tuples(st.just("promo"), st.integers(1, 6), st.floats(1.1, 3.0)),
    st.tuples(st.just("topup"), st.integers(1, 4), st.just(0.0)),
    st.tuples(st.just("job"), st.sampled_from(["IMAGE_TASK", "VIDEO_TASK"]), st.just(0.0)),
    st.tuples(st.just("end"), st.integers(0, 20), st.sampled_from([0.0, 1.0, 2.0])),
    st.tuples(st.just("claw"), st.integers(1, 4), st.just(0.0)),
    st.tuples(st.just("tick"), st.just(0), st.just(0.0)),
    st.tuples(st.just("hold"), st.integers(1, 6), st.sampled_from([1.0, 2.0, 3.0])),
    st.tuples(st.just("capture"), st.integers(0, 20), st.floats(0.0, 1.0)),
    st.tuples(st.just("void"), st.integers(0, 20), st.just(0.0)),
    st.tuples(st.just("htick"), st.just(0), st.just(0.0)),
)
ENDS = ["failed", "cancelled", "succeeded", "succeeded"]  # the last captures 1 RCC only
MAX_HOLD_TIMEOUT_S = 3


@dataclass
class ModelLot:
    remaining: int
    expires_at: datetime | None
    created: int  # the order of creation (for the age rule)
    expired: bool = False

    def live(self, at: datetime) -> bool:
        return not self.expired and (self.expires_at is None or at < self.expires_at)


def order(item: tuple[str, ModelLot]) -> tuple[bool, datetime, int]:
    lot = item[1]  # all priorities are equal here: the soonest expiry, then the oldest
    return (lot.expires_at is None, lot.expires_at or datetime.max.replace(tzinfo=UTC), lot.created)


def replay_lots(rows: list[asyncpg.Record], until: datetime | None = None) -> dict[str, ModelLot]:
    """Every lot from the wallet's events (up to `until`), checking each draw on the way."""
    lots: dict[str, ModelLot] = {}
    for row in rows:
        at: datetime = row["recorded_at"]
        if until is not None and at > until:
            break
        event = decode_event(row["type"], row["data"])
        match event:
            case GrantEvent() | CreditsAdjusted() if event.lot and event.amount > 0:
                lots[event.lot] = ModelLot(event.amount, event.expires_at, len(lots))
            case CreditsReserved() | CreditsClawedBack() | CreditsAdjusted() | CreditsHeld():
                _check_draws(lots, event.draws, at)
            case CreditsReleased() | HoldReleased():
                for lot_id, n in event.draws:
                    assert lots[lot_id].live(at), f"returned to expired {lot_id}"
                    lots[lot_id].remaining += n
                if event.relot:
                    rest = event.amount - sum(n for _, n in event.draws)
                    lots[event.relot] = ModelLot(rest, event.relot_expires_at, len(lots))
            case CreditsExpired():
                lot = lots[event.lot]
                assert lot.expires_at is not None and at >= lot.expires_at, "expired early"
                assert event.amount == lot.remaining, "an expiry takes exactly what was left"
                lot.remaining, lot.expired = 0, True
    return lots


def _check_draws(
    lots: dict[str, ModelLot], draws: tuple[tuple[str, int], ...], at: datetime
) -> None:
    before = {lot_id: lot.remaining for lot_id, lot in lots.items()}
    for lot_id, n in draws:
        lot = lots[lot_id]
        assert lot.live(at), f"drew from {lot_id} after it expired"
        lot.remaining -= n
        assert lot.remaining >= 0, f"{lot_id} below zero"
    if not draws:
        return
    ranked = sorted(lots.items(), key=order)
    last = max(i for i, (lot_id, _) in enumerate(ranked) if lot_id in dict(draws))
    for lot_id, lot in ranked[:last]:
        # Surely drawable when the draw was decided (decided before it was recorded).
        if before[lot_id] > 0 and lot.live(at + GUARD):
            assert lot.remaining == 0, f"skipped {lot_id} for a later lot"


def check_holds(rows: list[asyncpg.Record]) -> int:
    """Every hold on the wallet ends at most once, accounting for exactly what it held
    (captured + returned, a capture never above the hold); returns how many are open."""
    held: dict[str, int] = {}
    ends: dict[str, int] = {}
    for row in rows:
        event = decode_event(row["type"], row["data"])
        match event:
            case CreditsHeld():
                held[event.hold] = event.amount
            case HoldReleased() | HoldSettled():
                ends[event.hold] = ends.get(event.hold, 0) + 1
                assert ends[event.hold] == 1, f"hold {event.hold} ended twice"
                settled = event.held if isinstance(event, HoldSettled) else event.amount
                captured = 0 if isinstance(event, HoldSettled) else event.captured
                assert 0 <= captured <= held[event.hold] == event.held
                if isinstance(event, HoldReleased):
                    assert settled + captured == held[event.hold]
    return len(held) - len(ends)


def unexpired(lots: dict[str, ModelLot], at: datetime) -> int:
    return sum(lot.remaining for lot in lots.values() if lot.live(at))


class LotMachine(RuleBasedStateMachine):
    pool: asyncpg.Pool
    loop: asyncio.AbstractEventLoop

    def __init__(self) -> None:
        super().__init__()
        self.user = ""
        self.jobs: list[str] = []
        self.holds: list[tuple[str, int]] = []
        self.instants: list[datetime] = []

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    @initialize(signup=st.integers(0, 6))
    def open_wallet(self, signup: int) -> None:
        cmd = c.RegisterUser(
            email=f"{uuid.uuid4().hex[:12]}@lots.io", signup_grant_rcc=signup, lots=UNDATED
        )
        done = self.run(execute_alone(self.pool, cmd))
        assert isinstance(done, Done), done
        self.user = str(done.result["user_id"])

    @rule(ops=st.lists(OPS, min_size=2, max_size=8))
    def burst(self, ops: list[tuple[str, Any, float]]) -> None:
        now = datetime.now(UTC)

        async def one(op: tuple[str, Any, float]) -> Any:
            kind, arg, extra = op
            match kind:
                case "promo":
                    expires = now + timedelta(seconds=extra)
                    cmd: c.Command = c.AdjustCredits(
                        user_id=self.user, amount=arg, actor="a", note="promo", expires_at=expires
                    )
                case "topup":
                    cmd = c.GrantCredits(user_id=self.user, kind="topup", amount=arg, lots=UNDATED)
                case "job":
                    cmd = c.CreateJob(user_id=self.user, job_type=arg)
                case "end" if self.jobs:
                    job = self.jobs[arg % len(self.jobs)]
                    charged = 1 if int(extra) == 3 else None
                    cmd = c.MarkJob(
                        job_id=job, status=ENDS[int(extra)], error="e", charged_rcc=charged
                    )
                case "hold":
                    cmd = AuthorizeHold(
                        wallet_id=self.user, amount=arg, timeout_s=int(extra), reason="r",
                        service="svc",
                    )  # fmt: skip
                case "capture" if self.holds:
                    hold_id, amount = self.holds[arg % len(self.holds)]
                    cmd = CaptureHold(hold_id=hold_id, amount=round(amount * extra), service="svc")
                case "void" if self.holds:
                    cmd = VoidHold(hold_id=self.holds[arg % len(self.holds)][0], service="svc")
                case "htick":
                    return await HoldTimeoutScheduler(self.pool).tick()
                case "claw":
                    cmd = c.ClawBack(user_id=self.user, amount=arg, ref=None)
                case "tick":
                    return await ExpiryScheduler(self.pool).tick()
                case _:
                    return None
            return await execute_alone(self.pool, cmd)

        async def fire() -> list[Any]:
            return list(await asyncio.gather(*(one(op) for op in ops)))

        outcomes = self.run(fire())
        for op, outcome in zip(ops, outcomes, strict=True):
            if op[0] == "job" and isinstance(outcome, Done):
                self.jobs.append(str(outcome.result["job_id"]))
            if op[0] == "hold" and isinstance(outcome, Done):
                self.holds.append((outcome.result["id"], outcome.result["amount_rcc"]))

    @rule(seconds=st.floats(0.1, 0.8))
    def time_passes(self, seconds: float) -> None:
        self.instants.append(datetime.now(UTC))
        self.run(asyncio.sleep(seconds))

    @invariant()
    def lots_hold(self) -> None:
        async def read() -> tuple[list[asyncpg.Record], datetime, int, list[tuple[datetime, int]]]:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    """SELECT type, data, recorded_at FROM events WHERE stream_id = $1
                        ORDER BY version""",
                    f"wallet-{self.user}",
                )
                head = (await read_head(conn, f"wallet-{self.user}")).state
                now = datetime.now(UTC)
                spendable = wallets.spendable(wallets.fold([], _state(head)), now)
                past = []
                for instant in self.instants[-3:]:
                    state = await wallet_as_of(conn, self.user, at=instant)
                    past.append((instant, wallets.spendable(state, instant)))
            return rows, now, spendable, past

        if not self.user:
            return
        rows, now, spendable, past = self.run(read())
        lots = replay_lots(rows)
        check_holds(rows)
        assert spendable == unexpired(lots, now), (spendable, lots)
        for instant, balance in past:
            assert balance == unexpired(replay_lots(rows, instant), instant), instant


def _state(head: Any) -> wallets.WalletState:
    import msgspec

    return msgspec.convert(head, wallets.WalletState)


async def test_lots_hold_under_concurrent_bursts_and_time(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    LotMachine.pool = pool
    LotMachine.loop = asyncio.get_running_loop()
    bounded = settings(
        max_examples=10,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    await asyncio.to_thread(run_state_machine_as_test, LotMachine, settings=bounded)
    # Every hold ends: what nobody settled, the timeout scheduler voids (exactly once).
    await asyncio.sleep(MAX_HOLD_TIMEOUT_S + 0.1)
    await asyncio.gather(HoldTimeoutScheduler(pool).tick(), HoldTimeoutScheduler(pool).tick())
    open_holds = await owner.fetchval(
        "SELECT count(*) FROM streams WHERE stream_id LIKE 'hold-%' AND state->>'status' = 'held'"
    )
    assert open_holds == 0
    wallets_rows = await owner.fetch(
        "SELECT stream_id, type, data FROM events WHERE stream_id LIKE 'wallet-%' "
        "ORDER BY stream_id, version"
    )
    by_wallet: dict[str, list[asyncpg.Record]] = {}
    for row in wallets_rows:
        by_wallet.setdefault(row["stream_id"], []).append(row)
    assert sum(check_holds(rows) for rows in by_wallet.values()) == 0
    # The whole audit, lot checks included, over everything the bursts did.
    report = await verify(owner)
    assert report.ok, report.problems[:5]
    expired = await owner.fetchval("SELECT count(*) FROM events WHERE type = 'credits_expired'")
    drawn = await owner.fetchval(
        "SELECT count(*) FROM events WHERE type = 'credits_reserved' AND data->'draws' <> '[]'"
    )
    assert expired > 0 and drawn > 0, "the examples must expire and draw lots"
    ends = dict(
        await owner.fetch(
            """SELECT CASE WHEN type = 'hold_released' THEN data->>'captured' <> '0'
                           ELSE data->>'timeout' = 'true' END AS kind, count(*)
                 FROM events WHERE type IN ('hold_released', 'hold_voided')
                GROUP BY 1"""
        )
    )
    assert ends.get(True, 0) > 0, "the examples must capture part of a hold and time one out"
