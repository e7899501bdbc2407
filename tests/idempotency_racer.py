"""A racer for tests/test_idempotency_first_answer.py: a process of its own with its own
pool, that runs the commands it is told to at the moment it is told to.

Protocol, one JSON document per line: the test sends a trial (`{"kind", "user", "key",
...}`), the racer builds its commands and answers `"ready"`; the test sends `"go"` to
every racer at once, and each answers its keyed command's outcome. `python -m
tests.idempotency_racer DATABASE_URL`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import msgspec

from rcc.domain.errors import DomainError, error_code
from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.store.database import create_pool

WORKFLOW = {"1": {"class_type": "EmptyImage"}}


def keyed_command(trial: dict[str, Any]) -> c.Command:
    """The command both racers send under the one key."""
    if trial["kind"] == "cancel":
        return c.MarkJob(job_id=trial["job"], status="cancelled", actor="racer")
    return c.CreateJob(
        user_id=trial["user"],
        job_type="IMAGE_TASK",
        workflow=WORKFLOW,
        max_open_jobs=trial.get("limit"),
    )


def crowd(trial: dict[str, Any]) -> list[c.Command]:
    """Job creations of other users sent at the same instant, so that the keyed
    command shares a group-commit transaction with them (the batch path)."""
    return [
        c.CreateJob(user_id=user, job_type="IMAGE_TASK", workflow=WORKFLOW)
        for user in trial.get("crowd", [])
    ]


def answer(outcome: Any) -> dict[str, Any]:
    """An outcome as the test compares it: what a client would see."""
    if isinstance(outcome, DomainError):
        return {"refused": error_code(outcome)}
    return {"done": msgspec.to_builtins(outcome.result), "replayed": outcome.replayed}


async def main(url: str) -> None:
    pool = await create_pool(url, min_size=4, max_size=8)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            trial = json.loads(line)
            keyed, others = keyed_command(trial), crowd(trial)
            print(json.dumps("ready"), flush=True)
            assert json.loads(await reader.readline()) == "go"
            outcomes = await asyncio.gather(
                execute(pool, keyed, idempotency_key=trial["key"]),
                *(execute(pool, other) for other in others),
            )
            print(json.dumps(answer(outcomes[0])), flush=True)
    finally:
        await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
