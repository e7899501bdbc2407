"""Helpers for the ComfyUI adapter tests: a running worker, job state, ledger checks."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg

from comfy_adapter.config import AdapterSettings
from comfy_adapter.run import prompt_id_for
from comfy_adapter.worker import AdapterWorker
from rcc.audit import verify
from rcc.domain.events import decode_event
from rcc.service import backend_commands as bc
from rcc.service import commands as c
from rcc.service.backend_pool import usable_backends
from rcc.service.bus import execute
from rcc.service.handlers import Done
from tests.comfy_server import captures
from tests.helpers import balance_of

SUCCESS = captures.run_prompt("run_success")  # EmptyImage -> ImageInvert -> SaveImage
RUNTIME_ERROR = captures.run_prompt("run_runtime_error")  # ImageToMask(alpha): IndexError
SLOW = {  # EmptyImage -> ImageBlur -> SaveImage; the test server makes ImageBlur slow
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0},
    },
    "2": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "slow"}},
}


def invalid_prompt(name: str) -> dict[str, Any]:
    """The workflow of a recorded validation refusal (validation_errors/<name>.json)."""
    prompt: dict[str, Any] = captures.record(f"validation_errors/{name}.json")["request"][
        "json_body"
    ]["prompt"]
    return prompt


def settings_for(tmp_path: Path, urls: list[str], **overrides: Any) -> AdapterSettings:
    """Adapter settings with test-sized patience (backoff in tens of milliseconds)."""
    values: dict[str, Any] = {
        "urls": tuple(urls),
        "outputs_dir": tmp_path / "data" / "outputs",
        "retries": 3,
        "retry_base_s": 0.05,
        "retry_max_s": 0.2,
        "request_timeout_s": 2.0,
        "reconnect_max_s": 0.2,
        "poll_s": 2.0,
        "heartbeat_s": 0.3,
        "lease_s": 2.0,
    }
    values.update(overrides)
    return AdapterSettings(**values)


@contextlib.asynccontextmanager
async def running(pool: asyncpg.Pool, settings: AdapterSettings) -> AsyncIterator[AdapterWorker]:
    """An adapter worker in the background; stopped (and awaited) at the end."""
    worker = AdapterWorker(pool, settings, feed_poll_s=0.2)
    task = asyncio.create_task(worker.run())
    try:
        ready = asyncio.create_task(worker.caught_up.wait())
        await asyncio.wait({ready, task}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            ready.cancel()
            await task  # raises what killed it
        assert worker.caught_up.is_set(), "the adapter did not start"
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, timeout=15)


@contextlib.asynccontextmanager
async def adapter_process(
    env: dict[str, str], log: Path
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`rcc adapter` as a real process, logging to `log`; SIGTERM (if still alive) at the end."""
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "rcc.cli", "adapter", env=env, stdout=sink, stderr=sink
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=30)


async def create_job(
    pool: asyncpg.Pool,
    user_id: str,
    workflow: dict[str, Any],
    job_type: str = "IMAGE_TASK",
    org_id: str | None = None,
) -> str:
    """A job of `user_id` (on the organisation's wallet when `org_id` is given)."""
    command = c.CreateJob(user_id=user_id, job_type=job_type, workflow=workflow, org_id=org_id)
    done = await execute(pool, command)
    assert isinstance(done, Done), done
    return str(done.result["job_id"])


ADMIN = "ops@example.com"  # the actor of the tests' GPU pool commands
FAST_POOL = {"pool_refresh_s": 0.1, "health_s": 0.2}  # pool changes and health seen at once


async def pool_command(pool: asyncpg.Pool, command: Any) -> None:
    """Run a GPU pool command as the tests' admin."""
    done = await execute(pool, command, metadata={"actor": ADMIN})
    assert isinstance(done, Done), done


async def backend_id(pool: asyncpg.Pool, url: str) -> str:
    """The pool's id of the backend at `url`."""
    async with pool.acquire() as conn:
        return next(b.id for b in await usable_backends(conn) if b.url == url)


async def add_backend(pool: asyncpg.Pool, url: str, tags: tuple[str, ...] = ()) -> None:
    """An admin adds a backend with two slots and `tags`."""
    command = bc.AddBackend(backend_id=str(uuid.uuid4()), url=url, slots=2, tags=tags, actor=ADMIN)
    await pool_command(pool, command)


async def heartbeats(pool: asyncpg.Pool, count: int = 2) -> None:
    """Wait until the adapter has written `count` more heartbeats (every `heartbeat_s`,
    0.3 s in these tests; several dispatch rounds of `claim_poll_s` pass in between):
    time for it to act on what the test just did, observed rather than slept."""
    async with pool.acquire() as conn:
        seen = await conn.fetchval("SELECT max(heartbeat_at) FROM adapter_status")
    for _ in range(count):

        async def moved() -> bool:
            nonlocal seen
            async with pool.acquire() as conn:
                now = await conn.fetchval("SELECT max(heartbeat_at) FROM adapter_status")
            if seen is not None and now is not None and now <= seen:
                return False
            seen = now
            return now is not None

        await wait_until(moved, what="the adapter's next heartbeat")


async def stays_queued(pool: asyncpg.Pool, job_id: str, *servers: Any) -> None:
    """The job is queued, and after two more adapter heartbeats it still is and none of
    `servers` received it."""
    await wait_status(pool, job_id, "queued")
    await heartbeats(pool, 2)
    assert await status_of(pool, job_id) == "queued"
    assert sum(posts_for(server, job_id) for server in servers) == 0


def jain(shares: list[float]) -> float:
    """Jain's fairness index: 1 when every user has the same share, 1/n at worst."""
    total, squares = sum(shares), sum(s * s for s in shares)
    return total * total / (len(shares) * squares) if squares else 1.0


async def sample_slots(
    pool: asyncpg.Pool, samples: list[Counter[str]], stop: asyncio.Event, by: str = "user_id"
) -> None:
    """Every 10 ms: the GPU slots each user (or payer: `by="payer"`) holds (jobs claimed
    or on ComfyUI, not ended)."""
    assert by in ("user_id", "payer")
    while not stop.is_set():
        async with pool.acquire() as conn:
            rows = await conn.fetch(
                f"""SELECT {by} AS who, count(*) AS n FROM adapter_jobs
                     WHERE status IN ('created', 'queued', 'running')
                       AND (prompt_id IS NOT NULL OR lease_expires_at > now())
                     GROUP BY {by}"""
            )
        samples.append(Counter({r["who"]: int(r["n"]) for r in rows}))
        await asyncio.sleep(0.01)


async def job_events(pool: asyncpg.Pool, job_id: str) -> list[Any]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT type, data FROM events WHERE stream_id = $1 ORDER BY version", f"job-{job_id}"
        )
    return [decode_event(r["type"], r["data"]) for r in rows]


async def status_of(pool: asyncpg.Pool, job_id: str) -> str:
    async with pool.acquire() as conn:
        state = await conn.fetchval(
            "SELECT state FROM streams WHERE stream_id = $1", f"job-{job_id}"
        )
    return str(state["status"])


async def wait_status(pool: asyncpg.Pool, job_id: str, *statuses: str, within: float = 15.0) -> str:
    """Wait until the job's status is one of `statuses`; return it."""
    deadline = time.monotonic() + within
    while True:
        status = await status_of(pool, job_id)
        if status in statuses:
            return status
        assert time.monotonic() < deadline, f"job {job_id} is {status}, not {statuses}"
        await asyncio.sleep(0.02)


async def known(pool: asyncpg.Pool, jobs: list[str]) -> bool:
    """Whether the adapters' job table has all these jobs (its feed folded them): under
    load the feed may fold new jobs a moment after they were created, and the dispatch
    order is the dispatcher's only from then on."""
    async with pool.acquire() as conn:
        found = await conn.fetchval(
            "SELECT count(*) FROM adapter_jobs WHERE job_id = ANY($1::text[])", jobs
        )
    return int(found) == len(jobs)


async def wait_until(predicate: Any, within: float = 15.0, what: str = "condition") -> None:
    """Wait until `predicate()` is true; it may be a coroutine function (a query). The
    adapter tests' one way to wait for something they can observe."""
    deadline = time.monotonic() + within
    while not await _truth(predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def _truth(answer: Any) -> bool:
    return bool(await answer) if inspect.isawaitable(answer) else bool(answer)


async def assert_ledger(
    pool: asyncpg.Pool, owner: asyncpg.Connection, user_id: str, balance: int
) -> None:
    """The balance from the events alone, and the whole audit, hold."""
    async with pool.acquire() as conn:
        assert await balance_of(conn, user_id) == balance
    report = await verify(owner)
    assert report.ok, report.problems


def posts_for(server: Any, job_id: str) -> int:
    """How often the test server got POST /prompt for this job's prompt id."""
    return int(server.posts[prompt_id_for(job_id)])
