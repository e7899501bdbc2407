"""One key, one answer: two commands under one Idempotency-Key, sent at the same instant
from two OS processes each with its own pool, never get two different answers.

Each case runs 50 times. Before keyed commands were serialised on their key, the second
arrival looked the key up before the first had committed, then decided against the state
the first had left and answered its refusal: 201 and 402 when the balance equals the
cost, 201 and 429 at the open-job limit, 200 and 409 for two cancels. Half the job
creations also share a group-commit transaction with other users' creations (the batch
path), so both paths are raced.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from rcc.domain.prices import job_cost
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.conftest import REPO
from tests.helpers import funded_user

TRIALS = 50
CROWD = 3  # other users' creations sent alongside, in half the trials
COST = job_cost("IMAGE_TASK")
assert COST, "an image job costs credits"
WORKFLOW = {"1": {"class_type": "EmptyImage"}}

pytestmark = pytest.mark.xdist_group("racers")  # two processes each: keep them together


class Racer:
    """`python -m tests.idempotency_racer`: a process with its own pool."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, db_url: str) -> Racer:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.idempotency_racer",
            db_url,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    def send(self, message: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")

    async def receive(self) -> Any:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=60)
        assert line, f"racer exited with {await self.proc.wait()}"
        return json.loads(line)

    async def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), timeout=30)


@pytest.fixture
async def racers(db_url: str) -> AsyncIterator[tuple[Racer, Racer]]:
    pair = (await Racer.start(db_url), await Racer.start(db_url))
    try:
        yield pair
    finally:
        for racer in pair:
            await racer.stop()


async def race(racers: tuple[Racer, Racer], trial: dict[str, Any]) -> list[dict[str, Any]]:
    """Both racers send the trial's keyed command at once; their two answers."""
    for racer in racers:
        racer.send(trial)
    for racer in racers:
        assert await racer.receive() == "ready"
    for racer in racers:  # two writes a few microseconds apart: a real race
        racer.send("go")
    return [await racer.receive() for racer in racers]


def assert_one_answer(answers: list[dict[str, Any]], trial: int) -> None:
    """Both got the first answer: the same success, once fresh and once replayed."""
    first, second = answers
    assert "done" in first and "done" in second, f"trial {trial}: two answers {answers}"
    assert first["done"] == second["done"], f"trial {trial}: two answers {answers}"
    assert sorted([first["replayed"], second["replayed"]]) == [False, True], answers


async def count(pool: asyncpg.Pool, sql: str, *args: Any) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval(sql, *args))


async def created_jobs(pool: asyncpg.Pool, user: str) -> int:
    return await count(
        pool,
        "SELECT count(*) FROM events WHERE type = 'job_created' AND data->>'user_id' = $1",
        user,
    )


async def crowd_of(pool: asyncpg.Pool, trial: int) -> list[str]:
    if trial % 2:
        return []
    return [await funded_user(pool, 100) for _ in range(CROWD)]


async def test_balance_equal_to_the_cost_one_key_two_processes(
    pool: asyncpg.Pool, racers: tuple[Racer, Racer]
) -> None:
    for trial in range(TRIALS):
        user = await funded_user(pool, COST)  # enough for exactly one job
        key = f"jobs:{user}:{uuid.uuid4()}"
        crowd = await crowd_of(pool, trial)
        answers = await race(racers, {"kind": "create", "user": user, "key": key, "crowd": crowd})
        assert_one_answer(answers, trial)
        assert await created_jobs(pool, user) == 1, f"trial {trial}: one job"


async def test_open_job_limit_reached_one_key_two_processes(
    pool: asyncpg.Pool, racers: tuple[Racer, Racer]
) -> None:
    for trial in range(TRIALS):
        user = await funded_user(pool, 100)
        opened = await execute(
            pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK", workflow=WORKFLOW)
        )
        assert isinstance(opened, Done), opened  # one open: the limit of 2 allows one more
        key = f"jobs:{user}:{uuid.uuid4()}"
        crowd = await crowd_of(pool, trial)
        answers = await race(
            racers, {"kind": "create", "user": user, "key": key, "limit": 2, "crowd": crowd}
        )
        assert_one_answer(answers, trial)
        assert await created_jobs(pool, user) == 2, f"trial {trial}: one more job"


async def test_two_cancels_under_one_key_two_processes(
    pool: asyncpg.Pool, racers: tuple[Racer, Racer]
) -> None:
    for trial in range(TRIALS):
        user = await funded_user(pool, 100)
        made = await execute(
            pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK", workflow=WORKFLOW)
        )
        assert isinstance(made, Done), made
        job = str(made.result["job_id"])
        key = f"jobs:{user}:{uuid.uuid4()}"
        answers = await race(racers, {"kind": "cancel", "job": job, "user": user, "key": key})
        assert_one_answer(answers, trial)
        cancelled = await count(
            pool,
            "SELECT count(*) FROM events WHERE stream_id = $1 AND type = 'job_cancelled'",
            f"job-{job}",
        )
        assert cancelled == 1, f"trial {trial}: one cancel"


async def test_a_refusal_is_not_remembered_the_key_decides_afresh(pool: asyncpg.Pool) -> None:
    """The chosen rule (docs/TRUST.md): a refused command wrote nothing, its key included,
    so the same key later decides on the state as it is then. Twins at the same instant
    still agree, because the second waits for the first and sees the same state."""
    user = await funded_user(pool, 0)
    create = c.CreateJob(user_id=user, job_type="IMAGE_TASK", workflow=WORKFLOW)
    key = f"jobs:{user}:{uuid.uuid4()}"
    twins = await asyncio.gather(*(execute(pool, create, idempotency_key=key) for _ in range(2)))
    assert [type(t).__name__ for t in twins] == ["InsufficientCredits"] * 2, twins
    await execute(pool, c.GrantCredits(user_id=user, kind="topup", amount=COST))
    later = await execute(pool, create, idempotency_key=key)
    assert isinstance(later, Done) and not later.replayed, later
    again = await execute(pool, create, idempotency_key=key)
    assert isinstance(again, Done) and again.replayed and again.result == later.result


async def test_cancel_over_http_honours_the_idempotency_key(
    client: httpx.AsyncClient, user_token: str
) -> None:
    token = user_token
    auth = {"Authorization": f"Bearer {token}"}
    made = await client.post(
        "/jobs", json={"type": "IMAGE_TASK", "workflow": WORKFLOW}, headers=auth
    )
    assert made.status_code == 201, made.text
    job = made.json()["id"]
    keyed = {**auth, "Idempotency-Key": "cancel-once"}
    first = await client.post(f"/jobs/{job}/cancel", headers=keyed)
    second = await client.post(f"/jobs/{job}/cancel", headers=keyed)
    unkeyed = await client.post(f"/jobs/{job}/cancel", headers=auth)
    assert (first.status_code, second.status_code, unkeyed.status_code) == (200, 200, 409)
    assert first.json()["status"] == second.json()["status"] == "cancelled"


@pytest.fixture
async def user_token(pool: asyncpg.Pool) -> str:
    from rcc.service.tokens import create_token

    user = await funded_user(pool, 100)
    async with pool.acquire() as conn:
        return (await create_token(conn, "user", user))[1]
