"""Incremental projection with crashes equals one full replay (hypothesis, real PostgreSQL).

Each example drives real commands through `execute` (some of them concurrently), then
projects the new events in random batch sizes. Some batches crash: a handler raises
in the middle of folding, or a flush raises after it has written its rows but before
the checkpoint moved; such a batch must leave every table and checkpoint as it was.
Between batches nothing survives but the database (each batch runs on a fresh
connection with fresh in-memory state), which is what a process crash leaves.

Afterwards the read models must equal a full replay from position 0, the balances
must equal `audit.verify`'s recomputation, and the projections must agree with each
other and with the stream heads. The database grows across examples, so later
examples project onto read models that earlier ones built.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
from hypothesis import given
from hypothesis import strategies as st

from projections.registry import ALL, NAMES
from rcc.audit import verify
from rcc.follower import checkpoints
from rcc.follower.batch import follow_batch
from rcc.projector.model import Projection
from rcc.projector.replay import replay
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.projection_helpers import differences, drain, dump

T = TypeVar("T")


class Boom(Exception):
    """The injected crash."""


Step = tuple[Any, ...]
STEPS: st.SearchStrategy[Step] = st.one_of(
    st.tuples(st.just("register"), st.booleans(), st.integers(0, 4)),
    st.tuples(
        st.just("grant"),
        st.integers(0, 50),
        st.sampled_from(["topup", "subscription"]),
        st.integers(1, 20),
        st.sampled_from([None, "ref-a", "ref-b", "ref-c"]),
    ),
    st.tuples(st.just("adjust"), st.integers(0, 50), st.integers(-4, 4).filter(bool)),
    st.tuples(
        st.just("clawback"),
        st.integers(0, 50),
        st.integers(1, 8),
        st.sampled_from([None, "ref-a", "ref-b"]),
    ),
    st.tuples(st.just("create"), st.integers(0, 50), st.sampled_from(["IMAGE_TASK", "VIDEO_TASK"])),
    st.tuples(
        st.just("mark"),
        st.integers(0, 50),
        st.sampled_from(["queued", "running", "succeeded", "failed", "cancelled"]),
    ),
    st.tuples(st.just("admin"), st.integers(0, 50), st.booleans()),
    st.tuples(st.just("sign_in"), st.integers(0, 50), st.sampled_from(["admitted", "refused"])),
)
# A plan for one batch: its size and whether (and where) it crashes.
BATCHES = st.lists(
    st.tuples(
        st.integers(1, 40),
        st.sampled_from(["none", "none", "handler", "flush"]),
        st.integers(0, 6),  # which projection is sabotaged
        st.integers(1, 30),  # the handler call that raises
    ),
    min_size=1,
    max_size=30,
)


@dataclasses.dataclass
class World:
    pool: asyncpg.Pool
    owner: asyncpg.Connection
    loop: asyncio.AbstractEventLoop
    users: list[str] = dataclasses.field(default_factory=list)
    jobs: list[str] = dataclasses.field(default_factory=list)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)


def command_for(world: World, step: Step) -> c.Command | None:
    """The command a step stands for (None when it needs a user or job that does not exist)."""
    kind = step[0]
    if kind == "register":
        return c.RegisterUser(
            email=f"{uuid.uuid4().hex[:12]}@example.com", is_admin=step[1], signup_grant_rcc=step[2]
        )
    if kind == "mark":
        if not world.jobs:
            return None
        return c.MarkJob(job_id=world.jobs[step[1] % len(world.jobs)], status=step[2], error="x")
    if not world.users:
        return None
    user = world.users[step[1] % len(world.users)]
    match step:
        case ("grant", _, grant_kind, amount, ref):
            return c.GrantCredits(user_id=user, kind=grant_kind, amount=amount, ref=ref)
        case ("adjust", _, amount):
            return c.AdjustCredits(user_id=user, amount=amount, actor="admin@x", note="test")
        case ("clawback", _, amount, ref):
            return c.ClawBack(user_id=user, amount=amount, ref=ref)
        case ("create", _, job_type):
            return c.CreateJob(user_id=user, job_type=job_type, metadata={"n": step[1]})
        case ("admin", _, is_admin):
            return c.SetAdmin(user_id=user, is_admin=is_admin, actor="root@x")
        case ("sign_in", _, outcome):
            return c.RecordSignIn(
                method="password",
                email="a@example.com",
                outcome=outcome,
                user_id=user,
                ip="10.0.0.1",
            )
    raise AssertionError(step)


async def attempt(world: World, cmd: c.Command) -> object:
    try:
        return await execute(world.pool, cmd, metadata={"ip": "192.0.2.7"})
    except asyncpg.NullValueNotAllowedError:
        # A SetAdmin that changes nothing stages no event, and the ledger core then calls
        # rcc_append_v1 with empty arrays, which fails (reported); it wrote nothing.
        assert isinstance(cmd, c.SetAdmin)
        return None


async def run_steps(world: World, groups: list[list[Step]]) -> None:
    """Each group's commands run concurrently; groups run one after another."""
    for group in groups:
        commands = [cmd for step in group if (cmd := command_for(world, step)) is not None]
        outcomes = await asyncio.gather(*(attempt(world, cmd) for cmd in commands))
        for cmd, outcome in zip(commands, outcomes, strict=True):
            if not isinstance(outcome, Done):
                continue
            if isinstance(cmd, c.RegisterUser):
                world.users.append(str(outcome.result["user_id"]))
            elif isinstance(cmd, c.CreateJob):
                world.jobs.append(str(outcome.result["job_id"]))


def sabotaged(projection: Projection[Any], where: str, nth: int) -> Projection[Any]:
    """The same projection, but crashing in its nth handler call or after its flush wrote."""
    calls = 0

    def wrap(handler: Any) -> Any:
        def crashing(batch: Any, event: Any, record: Any) -> None:
            nonlocal calls
            calls += 1
            handler(batch, event, record)
            if where == "handler" and calls >= nth:
                raise Boom(f"handler of {projection.name} at position {record.position}")

        return crashing

    async def flush(conn: asyncpg.Connection, batch: Any) -> None:
        await projection.flush(conn, batch)
        if where == "flush":
            raise Boom(f"after the flush of {projection.name}")

    handlers = {k: wrap(h) for k, h in projection.handlers.items()}
    return Projection(projection.name, projection.tables, projection.new_batch, handlers, flush)


async def project_with_crashes(world: World, plan: list[tuple[int, str, int, int]]) -> None:
    for size, crash, victim, nth in plan:
        projections = list(ALL)
        if crash != "none":
            projections[victim] = sabotaged(ALL[victim], crash, nth)
        before = await dump(world.owner)
        async with world.owner.transaction():
            stored = await checkpoints.load(world.owner, NAMES)
        async with world.pool.acquire() as conn:
            try:
                await follow_batch(conn, projections, limit=size)
            except Boom:
                assert await dump(world.owner) == before, "a crashed batch left rows behind"
                assert await checkpoints.load(world.owner, NAMES) == stored
    await drain(world.pool, limit=17)


async def check_against_replay_and_audit(world: World) -> None:
    incremental = await dump(world.owner)
    await replay(world.owner, ALL, batch_size=64)
    await drain(world.pool)  # what the swap could not see yet (held back elsewhere)
    replayed = await dump(world.owner)
    assert replayed == incremental, differences(incremental, replayed)
    report = await verify(world.owner)
    assert report.ok, report.problems[:3]
    projected = {
        r["wallet_id"]: r["balance"]
        for r in await world.owner.fetch("SELECT wallet_id, balance FROM wallet_balances")
    }
    assert projected == report.balances
    # The projections agree with each other and with the write side's heads.
    heads = {
        r["stream_id"].removeprefix("wallet-"): r["open_jobs"]
        for r in await world.owner.fetch(
            """SELECT stream_id, COALESCE((state->>'open_jobs')::int, 0) AS open_jobs
                 FROM streams WHERE stream_id LIKE 'wallet-%'"""
        )
    }
    in_flight = {
        r["wallet_id"]: r["jobs_in_flight"]
        for r in await world.owner.fetch("SELECT wallet_id, jobs_in_flight FROM wallet_balances")
    }
    assert in_flight == heads
    assert not await world.owner.fetch(
        """SELECT 1 FROM users u JOIN wallet_balances b ON b.wallet_id = u.wallet_id
            WHERE u.balance <> b.balance"""
    )
    totals = await world.owner.fetchrow(
        """SELECT (SELECT count(*) FROM users) AS users,
                  (SELECT count(*) FROM users WHERE is_admin) AS admins,
                  (SELECT count(*) FROM users WHERE balance > 0) AS with_balance"""
    )
    stored = await world.owner.fetchrow("SELECT users, admins, with_balance FROM user_totals")
    assert (tuple(stored) if stored else (0, 0, 0)) == tuple(totals)
    ledger_sum = {
        r["wallet_id"]: r["total"]
        for r in await world.owner.fetch(
            "SELECT wallet_id, sum(delta) AS total FROM rcc_ledger GROUP BY wallet_id"
        )
    }
    assert all(projected[w] == total for w, total in ledger_sum.items())


async def test_incremental_projection_with_crashes_equals_replay(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    world = World(pool, owner, asyncio.get_running_loop())

    @given(
        groups=st.lists(st.lists(STEPS, min_size=1, max_size=4), min_size=1, max_size=12),
        plan=BATCHES,
    )
    def example(groups: list[list[Step]], plan: list[tuple[int, str, int, int]]) -> None:
        world.run(run_steps(world, groups))
        world.run(project_with_crashes(world, plan))
        world.run(check_against_replay_and_audit(world))

    await asyncio.to_thread(example)
    assert await owner.fetchval("SELECT count(*) FROM events") > 0
