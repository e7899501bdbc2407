"""`rcc bench adapter`: what the ComfyUI adapter adds to each job, in milliseconds.

Two runs against ComfyUI test servers that speak the recorded protocol
(tests/comfy_server, so run it from a checkout), in a fresh `rcc_bench*` database:

- serial: one backend, one job at a time. Dispatch overhead per job = (JobSucceeded
  recorded_at - JobCreated recorded_at) - ComfyUI's own execution time (its
  execution_start..execution_success timestamps, the job's duration_ms). It covers
  the log feed, queued and running marks, recording the prompt id, POST /prompt,
  the websocket, /history, the /view download, the execution log and the success mark.
- bulk: `--jobs` jobs queued before the adapter starts, over `--backends` servers; the
  wall time until the last one succeeded gives jobs per second and the amortised
  adapter time per job.
- dispatch, once with 1 adapter and once with `--adapters` (GPU pool, docs/GPU_POOL.md):
  `--jobs` jobs from 20 users created as fast as they commit while the adapters run;
  throughput (first commit to last success) and the latency from a job's commit to its
  recorded prompt (JobPromptSubmitted, appended right before POST /prompt), p50/p99.
  Backends get DISPATCH_SLOTS slots there, so the latency is the adapters' own, not the
  wait for a free GPU. The adapters are workers in this one process, each with its own
  identity, client id and leases (processes would add cores this machine does not have).

Exit 0 when every job succeeded, every prompt was posted exactly once and the audit
passed; 1 otherwise; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg

from comfy_adapter.config import AdapterSettings
from comfy_adapter.run import prompt_id_for
from comfy_adapter.worker import AdapterWorker
from rcc.audit import verify
from rcc.bench.ledger import recreate_database
from rcc.bootstrap import database_url
from rcc.config import Settings
from rcc.domain.errors import DomainError
from rcc.service.backend_commands import AddBackend, RemoveBackend
from rcc.service.backend_pool import usable_backends
from rcc.service.bus import execute
from rcc.service.commands import Command, CreateJob, GrantCredits, RegisterUser
from rcc.service.handlers import Done
from rcc.store.database import connect_owner, create_pool
from rcc.store.heads import read_head

# Slots per backend in the dispatch phase: enough that a job finds a free one, so the
# latency measured is the adapters' own (log fold, claim, record), not the wait for a GPU.
DISPATCH_SLOTS = 50
_DATABASE_NAME = re.compile(r"^rcc_bench[a-z0-9_]{0,54}$")
REPO = Path(__file__).resolve().parents[3]
WORKFLOW: dict[str, Any] = {  # EmptyImage -> ImageInvert -> SaveImage (run_success)
    "1": {
        "class_type": "EmptyImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 16744448},
    },
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}},
}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _test_server() -> Any:
    """The recorded-protocol ComfyUI server from the repository's tests."""
    if not (REPO / "tests" / "comfy_server").is_dir():
        raise SystemExit("rcc bench adapter needs tests/comfy_server: run it from a checkout")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    return importlib.import_module("tests.comfy_server").ComfyServer


async def _user(pool: asyncpg.Pool, credits: int) -> str:
    done = await execute(pool, RegisterUser(email=f"bench-{time.time_ns()}@example.com"))
    assert isinstance(done, Done), done
    user_id = str(done.result["user_id"])
    granted = await execute(pool, GrantCredits(user_id=user_id, kind="topup", amount=credits))
    assert isinstance(granted, Done), granted
    return user_id


async def _create(pool: asyncpg.Pool, user_id: str) -> str:
    done = await execute(pool, CreateJob(user_id=user_id, job_type="IMAGE_TASK", workflow=WORKFLOW))
    assert isinstance(done, Done), done
    return str(done.result["job_id"])


async def _status(pool: asyncpg.Pool, job_id: str) -> str:
    async with pool.acquire() as conn:
        head = await read_head(conn, f"job-{job_id}")
    return str(head.state["status"])


async def _until(check: Callable[[], Awaitable[bool]], interval: float) -> None:
    """Poll the database (the measurement uses recorded timestamps, not this loop)."""
    while True:
        if await check():
            return
        await asyncio.sleep(interval)


async def _ended(pool: asyncpg.Pool, job_id: str) -> bool:
    return await _status(pool, job_id) in ("succeeded", "failed", "cancelled")


async def _all_succeeded(pool: asyncpg.Pool, count: int) -> bool:
    return await _succeeded(pool) >= count


async def _succeeded(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        found: int = await conn.fetchval(
            """SELECT count(*) FROM streams
                WHERE stream_id LIKE 'job-%' AND state->>'status' = 'succeeded'"""
        )
    return found


async def _overheads_ms(pool: asyncpg.Pool, job_ids: list[str]) -> list[float]:
    """Per job: created -> succeeded as recorded, less ComfyUI's own execution time."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT c.recorded_at AS created, s.recorded_at AS ended,
                      (s.data->>'duration_ms')::float AS comfy_ms
                 FROM events c JOIN events s ON s.stream_id = c.stream_id
                WHERE c.stream_id = ANY($1::text[])
                  AND c.type = 'job_created' AND s.type = 'job_succeeded'""",
            [f"job-{j}" for j in job_ids],
        )
    return [
        (r["ended"] - r["created"]).total_seconds() * 1000 - (r["comfy_ms"] or 0.0) for r in rows
    ]


async def _pool_of(pool: asyncpg.Pool, urls: list[str], slots: int = 2) -> None:
    """Make the GPU pool exactly `urls`: each phase brings new test servers, and
    COMFYUI_URLS only seeds a pool nobody has written (docs/BACKENDS.md)."""
    async with pool.acquire() as conn:
        present = await usable_backends(conn)
    commands: list[Command] = [
        RemoveBackend(backend_id=b.id, actor="bench") for b in present if b.url not in urls
    ]
    known = {b.url for b in present}
    commands += [
        AddBackend(backend_id=str(uuid.uuid4()), url=url, slots=slots, actor="bench")
        for url in urls
        if url not in known
    ]
    for command in commands:
        done = await execute(pool, command)
        if isinstance(done, DomainError):
            raise RuntimeError(f"the bench could not set the GPU pool: {done.detail}")


@contextlib.asynccontextmanager
async def _adapter(
    pool: asyncpg.Pool,
    urls: list[str],
    outputs: Path,
    *,
    max_running_per_user: int = 2,
    slots: int = 2,
) -> Any:
    await _pool_of(pool, urls, slots)
    settings = AdapterSettings(
        urls=tuple(urls),
        outputs_dir=outputs,
        name="bench_adapter",
        max_running_per_user=max_running_per_user,
        slots=slots,
    )
    worker = AdapterWorker(pool, settings)
    task = asyncio.create_task(worker.run())
    try:
        await worker.caught_up.wait()
        yield worker
    finally:
        worker.stop()
        await task


async def _serial(pool: asyncpg.Pool, server_type: Any, count: int, outputs: Path) -> list[float]:
    user = await _user(pool, count + 1)
    jobs: list[str] = []
    async with server_type() as server, _adapter(pool, [server.url], outputs):
        for _ in range(count):
            job = await _create(pool, user)
            await _until(functools.partial(_ended, pool, job), 0.001)
            jobs.append(job)
        posted_once = all(server.posts[prompt_id_for(j)] == 1 for j in jobs)
    if not posted_once:
        raise RuntimeError("a serial job was posted more than once")
    return await _overheads_ms(pool, jobs)


async def _bulk(
    pool: asyncpg.Pool, server_type: Any, jobs: int, backends: int, outputs: Path
) -> tuple[float, list[int], bool]:
    users = [await _user(pool, jobs // 4 + 2) for _ in range(4)]
    created = [await _create(pool, users[n % 4]) for n in range(jobs)]
    before = await _succeeded(pool)
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(server_type()) for _ in range(backends)]
        start = time.perf_counter()
        await stack.enter_async_context(_adapter(pool, [s.url for s in servers], outputs))
        await _until(functools.partial(_all_succeeded, pool, before + jobs), 0.005)
        wall = time.perf_counter() - start
        per_backend = [sum(s.posts.values()) for s in servers]
        once = all(sum(s.posts[prompt_id_for(j)] for s in servers) == 1 for j in created)
    return wall, per_backend, once


async def _dispatch(
    pool: asyncpg.Pool, server_type: Any, jobs: int, backends: int, adapters: int, outputs: Path
) -> tuple[float, list[float], bool]:
    """Jobs committed while `adapters` workers run: throughput and commit -> prompt."""
    users = [await _user(pool, jobs // 20 + 2) for _ in range(20)]
    before = await _succeeded(pool)
    async with contextlib.AsyncExitStack() as stack:
        servers = [await stack.enter_async_context(server_type()) for _ in range(backends)]
        urls = [s.url for s in servers]
        for _ in range(adapters):
            await stack.enter_async_context(
                _adapter(pool, urls, outputs, max_running_per_user=jobs, slots=DISPATCH_SLOTS)
            )
        start = time.perf_counter()
        created: list[str] = []
        for first in range(0, jobs, 20):
            batch = range(first, min(jobs, first + 20))
            created += await asyncio.gather(*(_create(pool, users[n % 20]) for n in batch))
        await _until(functools.partial(_all_succeeded, pool, before + jobs), 0.005)
        wall = time.perf_counter() - start
        once = all(sum(s.posts[prompt_id_for(j)] for s in servers) == 1 for j in created)
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT extract(epoch FROM p.recorded_at - c.recorded_at) * 1000 AS ms
                 FROM events c JOIN events p ON p.stream_id = c.stream_id
                WHERE c.stream_id = ANY($1::text[])
                  AND c.type = 'job_created' AND p.type = 'job_prompt_submitted'""",
            [f"job-{j}" for j in created],
        )
    return wall, sorted(float(r["ms"]) for r in rows), once


def _percentile(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _argument_error(args: argparse.Namespace) -> str | None:
    if not _DATABASE_NAME.match(args.database):
        return "--database must match rcc_bench[a-z0-9_]* (the bench drops it on every run)"
    if args.jobs < 1 or args.backends < 1 or args.serial < 1 or args.adapters < 1:
        return "--jobs, --backends, --serial and --adapters must be positive"
    return None


async def run_adapter_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Run the serial and the bulk phase, print the report on stdout, return the status."""
    if problem := _argument_error(args):
        print(f"rcc bench adapter: {problem}", file=sys.stderr)
        return 2
    server_type = _test_server()
    log(f"preparing database {args.database}")
    url = await recreate_database(database_url(settings), args.database)
    outputs = Path(tempfile.mkdtemp(prefix="rcc-bench-outputs-"))
    pool = await create_pool(url, min_size=2, max_size=20)
    try:
        log(f"serial: {args.serial} jobs, one at a time, one backend")
        overheads = await _serial(pool, server_type, args.serial, outputs / "serial")
        log(f"bulk: {args.jobs} queued jobs over {args.backends} backends")
        wall, per_backend, once = await _bulk(
            pool, server_type, args.jobs, args.backends, outputs / "bulk"
        )
        pools: list[tuple[int, float, list[float], bool]] = []
        for adapters in sorted({1, args.adapters}):
            log(f"dispatch: {args.jobs} jobs committed while {adapters} adapter(s) run")
            found = await _dispatch(
                pool, server_type, args.jobs, args.backends, adapters, outputs / f"pool{adapters}"
            )
            pools.append((adapters, *found))
            once = once and found[2]
    finally:
        await pool.close()
        shutil.rmtree(outputs, ignore_errors=True)
    owner = await connect_owner(url)
    try:
        audit = await verify(owner)
    finally:
        await owner.close()
    ordered = sorted(overheads)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    lines = [
        "rcc bench adapter: ComfyUI test servers speaking the recorded 0.3.64 protocol,",
        "EmptyImage -> ImageInvert -> SaveImage, one 2x2 PNG output downloaded per job",
        "",
        f"serial ({len(overheads)} jobs, 1 backend): dispatch overhead per job "
        f"median {statistics.median(overheads):.1f} ms, mean {statistics.fmean(overheads):.1f} ms,"
        f" p95 {p95:.1f} ms",
        f"bulk ({args.jobs} jobs, {args.backends} backends x 2 slots): all succeeded in "
        f"{wall:.2f} s = {args.jobs / wall:.0f} jobs/s, {wall * 1000 / args.jobs:.2f} ms per job"
        f" amortised; per backend {per_backend}; every prompt posted once: "
        f"{'yes' if once else 'NO'}",
        *(
            f"dispatch with {n} adapter(s) ({args.jobs} jobs from 20 users, {args.backends} "
            f"backends x {DISPATCH_SLOTS} slots): {args.jobs / took:.0f} jobs/s; "
            "commit -> POST /prompt "
            f"p50 {_percentile(ms, 0.5):.1f} ms, p99 {_percentile(ms, 0.99):.1f} ms; "
            f"posted once: {'yes' if ok else 'NO'}"
            for n, took, ms, ok in pools
        ),
        f"audit: {'OK' if audit.ok else 'FAILED: ' + audit.problems[0]}",
    ]
    print("\n".join(lines), flush=True)
    return 0 if once and audit.ok else 1
