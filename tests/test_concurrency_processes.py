"""Four OS processes, each with its own pool, race on one wallet until it runs dry.

Each process runs its commands one transaction each (`execute_alone`, see
tests/race_worker.py), so nothing in one Python process orders them: what keeps the
wallet whole is the head row's lock inside PostgreSQL. The checks are done from the
events and the processes' own accounts of what was acknowledged to them.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from rcc.audit import verify
from rcc.domain.events import wallet_stream
from tests.helpers import balance_of, funded_user
from tests.race_worker import Account

REPO = Path(__file__).resolve().parents[1]
PROCESSES = 4
TASKS = 6  # concurrent transactions per process: 24 writers on one wallet
GRANTS = 2  # top-ups per loop once it runs dry
START_RCC = 40


async def _spawn(db_url: str, user: str, n: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.race_worker",
        db_url,
        user,
        f"racer-{n}",
        str(n),
        str(TASKS),
        str(GRANTS),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def _race(db_url: str, user: str) -> list[Account]:
    procs = [await _spawn(db_url, user, n) for n in range(PROCESSES)]
    try:
        async with asyncio.timeout(120):
            for proc in procs:  # every pool is open before anyone starts
                assert proc.stdout is not None
                assert (await proc.stdout.readline()).strip() == b"ready"
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
            outputs = [await proc.communicate() for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert [p.returncode for p in procs] == [0] * PROCESSES
    return [msgspec.json.decode(out.strip().splitlines()[-1], type=Account) for out, _ in outputs]


async def _wallet_writers(owner: asyncpg.Connection, user: str) -> list[Any]:
    rows = await owner.fetch(
        "SELECT metadata->>'actor' AS actor FROM events WHERE stream_id = $1 ORDER BY version",
        wallet_stream(user),
    )
    return [r["actor"] for r in rows]


async def test_processes_racing_on_one_wallet_spend_exactly_what_it_holds(
    pool: asyncpg.Pool, owner: asyncpg.Connection, db_url: str
) -> None:
    user = await funded_user(pool, START_RCC)
    accounts = await _race(db_url, user)

    created = [job for a in accounts for job in a.created]
    cancelled = [job for a in accounts for job in a.cancelled]
    granted = sum(g for a in accounts for g in a.granted)
    spent = sum(cost for _, cost in created) - sum(released for _, released in cancelled)
    assert granted == PROCESSES * TASKS * GRANTS * 7, "every loop used its grants"
    # A cancel releases exactly the job's reserve, once.
    costs = dict(created)
    assert all(released == costs[job] for job, released in cancelled)
    assert len({job for job, _ in cancelled}) == len(cancelled)

    # Exactly the affordable jobs: every loop ended on a refused 1 RCC image, after
    # which no grant or cancel came, so the wallet is spent to the last credit.
    head = await owner.fetchval(
        "SELECT (state->>'balance')::bigint FROM streams WHERE stream_id = $1",
        wallet_stream(user),
    )
    assert START_RCC + granted - spent == 0
    assert head == 0
    assert await balance_of(owner, user) == 0

    # Every acknowledged effect is in the log once, and nothing else is.
    jobs = await owner.fetchval("SELECT count(*) FROM streams WHERE stream_id LIKE 'job-%'")
    assert jobs == len(created) == len({job for job, _ in created})
    kinds = dict(
        await owner.fetch(
            "SELECT type, count(*) FROM events WHERE stream_id = $1 GROUP BY type",
            wallet_stream(user),
        )
    )
    assert kinds.get("credits_reserved") == len(created)
    assert kinds.get("credits_released") == len(cancelled)
    assert kinds.get("topup_granted") == 1 + PROCESSES * TASKS * GRANTS

    # No caller was ever told of a balance below zero, and each refusal was real.
    assert all(b >= 0 for a in accounts for b in a.balances_seen)
    assert all(0 <= balance < cost for a in accounts for balance, cost in a.refused)

    # The audit agrees: every chain holds, the running balance never dipped below zero,
    # every release matches a reserve, and the balance is the sum of the deltas.
    report = await verify(owner)
    assert report.ok, report.problems
    assert report.balances[user] == 0

    # The processes really interleaved on the wallet (the lock, not luck, kept it whole).
    writers = [w for w in await _wallet_writers(owner, user) if w and w.startswith("racer-")]
    assert len(set(writers)) == PROCESSES
    switches = sum(1 for a, b in itertools.pairwise(writers) if a != b)
    assert switches >= 4 * PROCESSES, f"only {switches} hand-overs between processes"
