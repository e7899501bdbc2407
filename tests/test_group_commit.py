"""How the group commit (rcc.service.coalesce) shares waiting job creations out: two
groups in flight, and never a user's job in a group while its wallet is in another."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg

from rcc.audit import verify
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.coalesce import MAX_GROUP, RUNNERS
from rcc.service.handlers import Done
from rcc.service.policy_commands import SetPolicy
from tests.helpers import funded_user


async def _groups(owner: asyncpg.Connection, users: list[str]) -> list[Counter[str]]:
    """The reserves of these users' wallets per transaction: how many each user had."""
    rows = await owner.fetch(
        """SELECT tx_id::text AS tx, substr(stream_id, 8) AS user_id FROM events
            WHERE type = 'credits_reserved' AND stream_id = ANY($1::text[])
            ORDER BY tx_id, position""",
        [f"wallet-{u}" for u in users],
    )
    groups: dict[str, Counter[str]] = {}
    for row in rows:
        groups.setdefault(row["tx"], Counter())[row["user_id"]] += 1
    return list(groups.values())


async def _create(pool: asyncpg.Pool, users: list[str]) -> None:
    """One job per entry, all submitted in the same moment."""
    outcomes = await asyncio.gather(
        *(execute(pool, c.CreateJob(user_id=u, job_type="IMAGE_TASK")) for u in users)
    )
    assert all(isinstance(o, Done) for o in outcomes), outcomes


async def test_waiting_job_creations_are_shared_between_the_runners(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    users = [await funded_user(pool, 10) for _ in range(40)]
    await _create(pool, users)
    groups = await _groups(owner, users)
    # Two transactions of 20, decided and committed side by side, not one of 40.
    assert RUNNERS == 2
    assert sorted(sum(g.values()) for g in groups) == [20, 20]
    assert sum(groups, Counter()) == Counter(users)
    report = await verify(owner)
    assert report.ok, report.problems


async def test_a_users_waiting_jobs_stay_in_one_group(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    """A hot wallet's jobs are not split between the runners: the second half would
    only wait for the first half's lock, and each flush would carry half as many."""
    await _room_for_many_jobs(pool)
    hot = await funded_user(pool, 100)
    await _create(pool, [hot] * 40)
    assert [sum(g.values()) for g in await _groups(owner, [hot])] == [40]


async def test_a_users_jobs_wait_for_the_next_group_while_its_wallet_is_in_one(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    await _room_for_many_jobs(pool)
    busy = await funded_user(pool, 200)
    others = [await funded_user(pool, 10) for _ in range(4)]
    # The first runner takes busy's first MAX_GROUP jobs, the second only the other
    # users' four; busy's last three wait for a third group instead of queueing, in
    # the second, behind the first group's lock on busy's wallet.
    tail = [others[0], busy, others[1], busy, others[2], busy, others[3]]
    await _create(pool, [busy] * MAX_GROUP + tail)
    groups = await _groups(owner, [busy, *others])
    shapes = sorted((g[busy], sum(g.values()) - g[busy]) for g in groups)
    assert shapes == [(0, 4), (3, 0), (MAX_GROUP, 0)]
    report = await verify(owner)
    assert report.ok, report.problems


async def _room_for_many_jobs(pool: asyncpg.Pool) -> None:
    """More unfinished jobs per user than the default allows."""
    policy = SetPolicy(
        key="jobs.max_queued", scope="global", scope_id="", value=1000, reason="t", actor="t"
    )
    assert isinstance(await execute(pool, policy), Done)
