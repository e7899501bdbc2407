"""Hypothesis drives the real ledger (PostgreSQL, real commands) against a plain model.

Every step runs real commands through `execute`; invariants compare the store with the
model after each step, and the audit recomputes every chain and balance at the end.
Concurrent steps fire several commands at once on real connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
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
from rcc.domain.errors import IllegalTransition, InsufficientCredits, Invalid
from rcc.domain.prices import JOB_PRICES_RCC
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.helpers import JOB_LIFECYCLE, balance_of

T = TypeVar("T")
JOB_TYPES = st.sampled_from(sorted(JOB_PRICES_RCC))
STATUSES = st.sampled_from(["queued", "running", "succeeded", "failed", "cancelled"])
TRANSITIONS = JOB_LIFECYCLE


@dataclass
class ModelJob:
    job_id: str
    user: str
    cost: int
    bypass: bool
    status: str = "created"


class LedgerMachine(RuleBasedStateMachine):
    """The model: balances and job statuses as plain Python; the store must agree."""

    pool: asyncpg.Pool
    loop: asyncio.AbstractEventLoop
    users = Bundle("users")
    jobs = Bundle("jobs")

    def __init__(self) -> None:
        super().__init__()
        self.balance: dict[str, int] = {}
        self.admin: dict[str, bool] = {}
        self.model_jobs: dict[str, ModelJob] = {}

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def done(self, outcome: object) -> Done:
        assert isinstance(outcome, Done), outcome
        return outcome

    @initialize(target=users)
    def first_user(self) -> str:
        return self._register(False, 5)

    @rule(target=users, admin=st.booleans(), signup=st.integers(0, 12))
    def register(self, admin: bool, signup: int) -> str:
        return self._register(admin, signup)

    def _register(self, admin: bool, signup: int) -> str:
        import uuid

        email = f"{uuid.uuid4().hex[:12]}@example.com"
        done = self.done(
            self.run(
                execute(
                    self.pool, c.RegisterUser(email=email, is_admin=admin, signup_grant_rcc=signup)
                )
            )
        )
        user = str(done.result["user_id"])
        self.balance[user] = signup
        self.admin[user] = admin
        return user

    # A subscription month ends the previous month's lot (tests/test_subscription_months.py),
    # which this model of a single number does not follow: grants here are the other kinds.
    @rule(user=users, amount=st.integers(-3, 30), kind=st.sampled_from(["topup", "signup"]))
    def grant(self, user: str, amount: int, kind: str) -> None:
        outcome = self.run(
            execute(self.pool, c.GrantCredits(user_id=user, kind=kind, amount=amount))
        )
        if amount <= 0:
            assert isinstance(outcome, Invalid)
            return
        self.done(outcome)
        self.balance[user] += amount

    @rule(user=users, amount=st.integers(-30, 30), note=st.sampled_from(["", "goodwill"]))
    def adjust(self, user: str, amount: int, note: str) -> None:
        outcome = self.run(
            execute(
                self.pool,
                c.AdjustCredits(user_id=user, amount=amount, actor="admin@example.com", note=note),
            )
        )
        if amount == 0 or not note or self.balance[user] + amount < 0:
            assert isinstance(outcome, Invalid), outcome
            return
        self.done(outcome)
        self.balance[user] += amount

    @rule(user=users, amount=st.integers(1, 40))
    def claw_back(self, user: str, amount: int) -> None:
        done = self.done(self.run(execute(self.pool, c.ClawBack(user_id=user, amount=amount))))
        taken = min(amount, self.balance[user])
        assert done.result["shortfall"] == amount - taken
        self.balance[user] -= taken

    @rule(target=jobs, user=users, job_type=JOB_TYPES)
    def create_job(self, user: str, job_type: str) -> str:
        cost = JOB_PRICES_RCC[job_type]
        outcome = self.run(execute(self.pool, c.CreateJob(user_id=user, job_type=job_type)))
        if not self.admin[user] and self.balance[user] < cost:
            assert isinstance(outcome, InsufficientCredits), outcome
            assert (outcome.balance_rcc, outcome.cost_rcc) == (self.balance[user], cost)
            return "refused"
        job_id = str(self.done(outcome).result["job_id"])
        self._record_job(job_id, user, cost)
        return job_id

    def _record_job(self, job_id: str, user: str, cost: int) -> None:
        bypass = self.admin[user]
        self.model_jobs[job_id] = ModelJob(job_id, user, cost, bypass)
        if not bypass:
            self.balance[user] -= cost

    @rule(user=users, kinds=st.lists(JOB_TYPES, min_size=2, max_size=12))
    def concurrent_jobs(self, user: str, kinds: list[str]) -> None:
        async def fire() -> list[object]:
            return list(
                await asyncio.gather(
                    *(execute(self.pool, c.CreateJob(user_id=user, job_type=k)) for k in kinds)
                )
            )

        outcomes = self.run(fire())
        start = self.balance[user]
        for kind, outcome in zip(kinds, outcomes, strict=True):
            if isinstance(outcome, Done):
                self._record_job(str(outcome.result["job_id"]), user, JOB_PRICES_RCC[kind])
            else:
                assert isinstance(outcome, InsufficientCredits) and not self.admin[user]
        if not self.admin[user]:
            assert 0 <= self.balance[user] <= start
            refused = [r for r in outcomes if isinstance(r, InsufficientCredits)]
            assert all(r.cost_rcc > self.balance[user] for r in refused)

    @rule(job=jobs, status=STATUSES)
    def move_job(self, job: str, status: str) -> None:
        if job == "refused":
            return
        model = self.model_jobs[job]
        outcome = self.run(execute(self.pool, c.MarkJob(job_id=job, status=status, error="e")))
        if status not in TRANSITIONS[model.status]:
            assert isinstance(outcome, IllegalTransition), (model.status, status, outcome)
            return
        done = self.done(outcome)
        refund = model.cost if status in {"failed", "cancelled"} and not model.bypass else 0
        assert done.result["released_rcc"] == refund
        self.balance[model.user] += refund
        model.status = status

    @rule(job=jobs, status=st.sampled_from(["failed", "cancelled"]), repeats=st.integers(2, 6))
    def concurrent_release(self, job: str, status: str, repeats: int) -> None:
        if job == "refused":
            return
        model = self.model_jobs[job]

        async def fire() -> list[object]:
            return list(
                await asyncio.gather(
                    *(
                        execute(self.pool, c.MarkJob(job_id=job, status=status, error="e"))
                        for _ in range(repeats)
                    )
                )
            )

        outcomes = self.run(fire())
        winners = [o for o in outcomes if isinstance(o, Done)]
        legal = status in TRANSITIONS[model.status]
        assert len(winners) == (1 if legal else 0), outcomes
        assert all(isinstance(o, (Done, IllegalTransition)) for o in outcomes)
        if legal:
            self.balance[model.user] += 0 if model.bypass else model.cost
            model.status = status

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
            assert balance >= 0, "invariant 1: never negative"
            # Invariant 2: the cached head and the sum of ledger deltas both equal the model.
            assert stored[user] == (balance, balance), (user, stored[user], balance)


async def test_ledger_matches_the_model(pool: asyncpg.Pool, owner: asyncpg.Connection) -> None:
    LedgerMachine.pool = pool
    LedgerMachine.loop = asyncio.get_running_loop()
    await asyncio.to_thread(run_state_machine_as_test, LedgerMachine)
    # Invariants 2, 3 and 5 over everything the machine did: chains, sums, releases.
    report = await verify(owner)
    assert report.ok, report.problems[:5]
    assert report.events > 0
