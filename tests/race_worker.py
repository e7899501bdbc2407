"""One racing OS process for tests/test_concurrency_processes.py.

`python -m tests.race_worker DATABASE_URL USER_ID NAME SEED TASKS GRANTS` opens its own
asyncpg pool, prints `ready`, waits for a line on stdin (the start signal, so every
process races from the same moment), then runs TASKS concurrent loops on the user's
wallet: create jobs (images and videos), cancel some of its own right away, and grant
GRANTS top-ups per loop when it runs dry. A loop ends when it has no grant left and an
image (1 RCC) is refused. Each command runs through `execute_alone`, one transaction
per command, never the in-process job batcher: only PostgreSQL's row locks keep the
processes apart. The last stdout line is a JSON account of every acknowledged effect.
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import msgspec

from rcc.domain.errors import InsufficientCredits
from rcc.service import commands as c
from rcc.service.bus import execute_alone
from rcc.service.handlers import Done
from rcc.store.database import create_pool

GRANT_RCC = 7


class Account(msgspec.Struct, kw_only=True):
    """What this process was told took effect (acknowledged) and what it was refused."""

    created: list[tuple[str, int]] = []  # (job id, cost)
    cancelled: list[tuple[str, int]] = []  # (job id, released)
    granted: list[int] = []
    refused: list[tuple[int, int]] = []  # (balance it reported, cost)
    balances_seen: list[int] = []


async def _loop(
    pool: Any, user: str, name: str, rng: random.Random, grants: int, account: Account
) -> None:
    metadata = {"actor": name}
    while True:
        job_type = "VIDEO_TASK" if rng.random() < 0.3 else "IMAGE_TASK"
        cmd = c.CreateJob(user_id=user, job_type=job_type)
        outcome = await execute_alone(pool, cmd, metadata=metadata)
        if isinstance(outcome, Done):
            job_id, cost = str(outcome.result["job_id"]), int(outcome.result["cost_rcc"])
            account.created.append((job_id, cost))
            account.balances_seen.append(int(outcome.result["balance_rcc"]))
            if rng.random() < 0.3:
                mark = c.MarkJob(job_id=job_id, status="cancelled", actor=name)
                moved = await execute_alone(pool, mark, metadata=metadata)
                assert isinstance(moved, Done), moved
                account.cancelled.append((job_id, int(moved.result["released_rcc"])))
            continue
        assert isinstance(outcome, InsufficientCredits), outcome
        account.refused.append((outcome.balance_rcc, outcome.cost_rcc))
        if grants:
            grants -= 1
            grant = c.GrantCredits(user_id=user, kind="topup", amount=GRANT_RCC)
            granted = await execute_alone(pool, grant, metadata=metadata)
            assert isinstance(granted, Done), granted
            account.granted.append(GRANT_RCC)
        elif job_type == "IMAGE_TASK":
            return  # dry: not even the cheapest job fits, and nothing more to add


async def main(url: str, user: str, name: str, seed: int, tasks: int, grants: int) -> None:
    pool = await create_pool(url, min_size=tasks, max_size=tasks)
    try:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        account = Account()
        rngs = [random.Random(f"{seed}-{n}") for n in range(tasks)]
        await asyncio.gather(*(_loop(pool, user, name, r, grants, account) for r in rngs))
        print(msgspec.json.encode(account).decode(), flush=True)
    finally:
        await pool.close()


if __name__ == "__main__":
    url, user, name, seed, tasks, grants = sys.argv[1:7]
    asyncio.run(main(url, user, name, int(seed), int(tasks), int(grants)))
