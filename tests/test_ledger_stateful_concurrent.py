"""Hypothesis fires many commands at once, each in its own transaction, on real PostgreSQL.

Each step of this machine sends a burst of commands together (`asyncio.gather` over
the pool, every command through `execute_alone`: its own transaction, never the job
batcher), mixing job creations, grants, adjustments, clawbacks and job moves on one
wallet. The commit order is PostgreSQL's, so the model is rebuilt from the answers and
checked against the events: the job lifecycle below is written here, from the
product's rules, not imported from the code under test.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from rcc.audit import verify
from rcc.domain.errors import DomainError, IllegalTransition, InsufficientCredits, Invalid
from rcc.service import commands as c
from rcc.service.bus import execute_alone
from rcc.service.handlers import Done
from tests.helpers import JOB_LIFECYCLE, balance_of

T = TypeVar("T")

ALLOWED = JOB_LIFECYCLE
RELEASING = frozenset({"failed", "cancelled"})  # these give the reserve back
STATUS_OF_EVENT = {
    "job_queued": "queued",
    "job_started": "running",
    "job_succeeded": "succeeded",
    "job_failed": "failed",
    "job_cancelled": "cancelled",
}
PRICES = {"IMAGE_TASK": 1, "VIDEO_TASK": 5}  # the PRD's price list

STATUSES = st.sampled_from(sorted(STATUS_OF_EVENT.values()))
OPS = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(sorted(PRICES))),
    st.tuples(st.just("grant"), st.integers(1, 10)),
    st.tuples(st.just("adjust"), st.integers(-8, 8)),
    st.tuples(st.just("claw_back"), st.integers(1, 6)),
    st.tuples(st.just("move"), st.tuples(st.integers(0, 30), STATUSES)),
)


@dataclass
class ModelJob:
    user: str
    cost: int
    bypass: bool
    status: str = "created"
    version: int = 1  # events in the job's stream


@dataclass
class Burst:
    """What one burst asked for, and what came back for each command."""

    commands: list[c.Command] = field(default_factory=list)
    outcomes: list[Any] = field(default_factory=list)


class ConcurrentLedger(RuleBasedStateMachine):
    pool: asyncpg.Pool
    loop: asyncio.AbstractEventLoop
    users = Bundle("users")

    def __init__(self) -> None:
        super().__init__()
        self.balance: dict[str, int] = {}
        self.admin: dict[str, bool] = {}
        self.jobs: dict[str, ModelJob] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    @initialize(target=users)
    def first_user(self) -> str:
        return self._register(False, 12)

    @rule(target=users, admin=st.booleans(), signup=st.integers(0, 12))
    def register(self, admin: bool, signup: int) -> str:
        return self._register(admin, signup)

    def _register(self, admin: bool, signup: int) -> str:
        email = f"{uuid.uuid4().hex[:12]}@example.com"
        cmd = c.RegisterUser(email=email, is_admin=admin, signup_grant_rcc=signup)
        done = self.run(execute_alone(self.pool, cmd))
        assert isinstance(done, Done), done
        user = str(done.result["user_id"])
        self.balance[user], self.admin[user] = signup, admin
        return user

    @rule(user=users, ops=st.lists(OPS, min_size=2, max_size=10))
    def burst(self, user: str, ops: list[tuple[str, Any]]) -> None:
        """Fire every op at once, each in its own transaction, then reconcile."""
        burst = Burst(commands=[self._command(user, op) for op in ops])
        burst.commands = [cmd for cmd in burst.commands if cmd is not None]

        async def fire() -> list[Any]:
            return list(
                await asyncio.gather(*(execute_alone(self.pool, cmd) for cmd in burst.commands))
            )

        burst.outcomes = self.run(fire())
        released = self._reconcile_moves(burst)
        self.balance[user] += released
        for cmd, outcome in zip(burst.commands, burst.outcomes, strict=True):
            if not isinstance(cmd, c.MarkJob):
                self._apply_wallet(user, cmd, outcome)

    def _command(self, user: str, op: tuple[str, Any]) -> c.Command | None:
        kind, arg = op
        match kind:
            case "create":
                return c.CreateJob(user_id=user, job_type=arg)
            case "grant":
                return c.GrantCredits(user_id=user, kind="topup", amount=arg)
            case "adjust":
                return c.AdjustCredits(user_id=user, amount=arg, actor="admin", note="burst")
            case "claw_back":
                return c.ClawBack(user_id=user, amount=arg)
        mine = [job for job, model in self.jobs.items() if model.user == user]
        if not mine:
            return None
        index, status = arg
        return c.MarkJob(job_id=mine[index % len(mine)], status=status, error="e")

    def _apply_wallet(self, user: str, cmd: c.Command, outcome: Any) -> None:
        match cmd:
            case c.CreateJob():
                cost = PRICES[cmd.job_type]
                if isinstance(outcome, InsufficientCredits):
                    # Refused on a real balance too small for it, never on a negative one.
                    assert not self.admin[user] and 0 <= outcome.balance_rcc < cost, outcome
                    return
                assert isinstance(outcome, Done), outcome
                assert outcome.result["balance_rcc"] >= 0
                bypass = self.admin[user]
                assert outcome.result["bypass"] is bypass
                self.jobs[str(outcome.result["job_id"])] = ModelJob(user, cost, bypass)
                self.balance[user] -= 0 if bypass else cost
            case c.GrantCredits():
                assert isinstance(outcome, Done), outcome
                self.balance[user] += cmd.amount
            case c.AdjustCredits():
                if isinstance(outcome, Invalid):
                    # Zero, or a debit the balance could not cover when it ran.
                    assert cmd.amount <= 0, outcome
                    return
                assert isinstance(outcome, Done) and outcome.result["delta"] == cmd.amount
                self.balance[user] += cmd.amount
            case c.ClawBack():
                assert isinstance(outcome, Done), outcome
                taken = -int(outcome.result["delta"])
                assert 0 <= taken <= cmd.amount
                assert outcome.result["shortfall"] == cmd.amount - taken
                self.balance[user] -= taken

    def _reconcile_moves(self, burst: Burst) -> int:
        """Check each moved job's new events against ALLOWED and the answers; return
        what the moves released to the wallet."""
        by_job: dict[str, list[tuple[str, Any]]] = {}
        for cmd, outcome in zip(burst.commands, burst.outcomes, strict=True):
            if isinstance(cmd, c.MarkJob):
                by_job.setdefault(cmd.job_id, []).append((cmd.status, outcome))
        released = 0
        for job_id, moves in by_job.items():
            released += self._reconcile_job(job_id, moves)
        return released

    def _reconcile_job(self, job_id: str, moves: list[tuple[str, Any]]) -> int:
        model = self.jobs[job_id]
        path = self.run(self._new_statuses(job_id, model.version))
        # The events, in commit order, walk the lifecycle one allowed step at a time.
        walked = [model.status, *path]
        for before, after in zip(walked, path, strict=False):
            assert after in ALLOWED[before], (walked, moves)
        accepted = [status for status, outcome in moves if isinstance(outcome, Done)]
        assert sorted(accepted) == sorted(path), (path, moves)
        for status, outcome in moves:
            if isinstance(outcome, DomainError):
                # A refusal names the status it saw, one the job really had, from
                # which the requested move is not allowed.
                assert isinstance(outcome, IllegalTransition), outcome
                assert outcome.status in walked and status not in ALLOWED[outcome.status]
        due = model.cost if not model.bypass and RELEASING & set(path) else 0
        assert len(RELEASING & set(path)) <= 1 and len(path) == len(set(path))
        reported = sum(int(o.result["released_rcc"]) for _, o in moves if isinstance(o, Done))
        assert reported == due, (path, moves)
        model.status, model.version = walked[-1], model.version + len(path)
        return due

    async def _new_statuses(self, job_id: str, after_version: int) -> list[str]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT type FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version",
                f"job-{job_id}",
                after_version,
            )
        return [STATUS_OF_EVENT[r["type"]] for r in rows]

    @invariant()
    def store_agrees_with_model(self) -> None:
        async def read() -> dict[str, tuple[int, int]]:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    """SELECT substr(stream_id, 8) AS wallet, (state->>'balance')::int AS cached
                         FROM streams WHERE stream_id = ANY($1::text[])""",
                    [f"wallet-{u}" for u in self.balance],
                )
                summed = {u: await balance_of(conn, u) for u in self.balance}
            return {r["wallet"]: (r["cached"], summed[r["wallet"]]) for r in rows}

        stored = self.run(read())
        for user, balance in self.balance.items():
            assert balance >= 0, "never negative"
            assert stored[user] == (balance, balance), (user, stored[user], balance)


async def test_concurrent_bursts_keep_the_ledger_whole(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    ConcurrentLedger.pool = pool
    ConcurrentLedger.loop = asyncio.get_running_loop()
    bounded = settings(
        max_examples=15,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    await asyncio.to_thread(run_state_machine_as_test, ConcurrentLedger, settings=bounded)
    # Over everything the bursts did: chains, running balances never below zero, and
    # every release matching one reserve of a failed or cancelled job.
    report = await verify(owner)
    assert report.ok, report.problems[:5]
    assert report.events > 0
