"""Real projector processes: `kill -9` mid-run, two at once, `rcc serve`, and the CLI."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import asyncpg

from projections.registry import ALL, NAMES
from rcc.audit import verify
from rcc.bench.projections import generate
from rcc.projector.replay import replay
from rcc.projector.wait import wait_for
from rcc.service import commands as c
from tests.projection_helpers import (
    behind,
    differences,
    done,
    drain,
    dump,
    register,
    settle,
)

RCC = [sys.executable, "-m", "rcc.cli"]


def start(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as sink:  # the child keeps its own descriptor
        return subprocess.Popen([*RCC, *args], env=env, stdout=sink, stderr=subprocess.STDOUT)


async def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.to_thread(proc.wait, 30)


async def checkpoint(pool: asyncpg.Pool) -> tuple[int, int]:
    """The oldest projection checkpoint, as (tx_id, position)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            """SELECT tx_id::text::bigint AS tx, position FROM projection_checkpoints
                ORDER BY tx_id, position LIMIT 1"""
        )
    return int(row["tx"]), int(row["position"])


async def caught_up(pool: asyncpg.Pool) -> None:
    async with asyncio.timeout(120):
        while True:
            async with pool.acquire() as conn:
                if not await behind(conn):
                    return
            await asyncio.sleep(0.05)


async def assert_equals_clean_replay(pool: asyncpg.Pool, owner: asyncpg.Connection) -> None:
    projected = await dump(owner)
    await replay(owner, ALL)
    await drain(pool)
    replayed = await dump(owner)
    assert replayed == projected, differences(projected, replayed)
    report = await verify(owner)
    assert report.ok, report.problems[:3]
    balances = {
        r["wallet_id"]: r["balance"]
        for r in await owner.fetch("SELECT wallet_id, balance FROM wallet_balances")
    }
    assert balances == report.balances


async def mixed_commands(pool: asyncpg.Pool, users: int = 4, jobs: int = 10) -> None:
    """Concurrent writers: grants, jobs that fail and release, an admin change."""

    async def writer(i: int) -> None:
        user = await register(pool, grant=40, admin=i == 0)
        for n in range(jobs):
            job = await done(pool, c.CreateJob(user_id=user, job_type="VIDEO_TASK"))
            status = "failed" if n % 3 == 0 else "succeeded"
            job_id = str(job.result["job_id"])
            await done(pool, c.MarkJob(job_id=job_id, status="running"))
            await done(pool, c.MarkJob(job_id=job_id, status=status, error="x"))
        await done(pool, c.SetAdmin(user_id=user, is_admin=i != 0, actor="root"))

    await asyncio.gather(*(writer(i) for i in range(users)))


async def test_kill_9_mid_run_then_restart_equals_a_clean_replay(
    pool: asyncpg.Pool,
    owner: asyncpg.Connection,
    db_url: str,
    cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    await generate(db_url, 15_000)  # three users with 1,000 job lifecycles each
    await mixed_commands(pool)
    log = tmp_path / "projector.log"
    for round_ in range(3):  # three hard kills at different points of the run
        before = await checkpoint(pool)
        proc = start(cli_env, "projector", "--batch-size", "20", log=log)
        try:
            async with asyncio.timeout(120):
                while True:  # until the first batch has committed
                    if await checkpoint(pool) != before:
                        break
                    await asyncio.sleep(0.005)
            await asyncio.sleep(0.01 * round_)
        finally:
            proc.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(proc.wait, 30) == -signal.SIGKILL
        async with pool.acquire() as conn:
            assert await behind(conn), "the kill must land mid-run"
    proc = start(cli_env, "projector", log=log)
    await caught_up(pool)
    assert await stop(proc) == 0, log.read_text()  # SIGTERM: a graceful stop
    await assert_equals_clean_replay(pool, owner)


async def test_two_projector_processes_at_once_apply_each_event_once(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str], tmp_path: Path
) -> None:
    procs = [
        start(
            cli_env,
            "projector",
            "--batch-size",
            "5",
            "--poll-interval",
            "0.05",
            log=tmp_path / f"projector-{i}.log",
        )
        for i in range(2)
    ]
    logs = [tmp_path / f"projector-{i}.log" for i in range(2)]
    try:
        async with asyncio.timeout(60):  # both are following the log before writes begin
            while True:
                if all("projector running" in log.read_text() for log in logs):
                    break
                await asyncio.sleep(0.02)
        await mixed_commands(pool, users=6, jobs=8)
        await caught_up(pool)
    finally:
        codes = [await stop(p) for p in procs]
    assert codes == [0, 0], [log.read_text() for log in logs]
    # A doubled event would double a sum (balances, dashboard) or break a key (ledger).
    await assert_equals_clean_replay(pool, owner)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


async def test_serve_runs_the_projector_in_process_and_stops_cleanly(
    pool: asyncpg.Pool, cli_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    proc = start(cli_env, "serve", "--port", str(port), log=tmp_path / "serve.log")
    try:
        async with asyncio.timeout(60):
            while not await asyncio.to_thread(healthy, f"http://127.0.0.1:{port}/healthz"):
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                await asyncio.sleep(0.1)
        user = await register(pool, grant=9)
        granted = await done(pool, c.GrantCredits(user_id=user, kind="topup", amount=1))
        assert await wait_for(pool, granted.checkpoint, NAMES, timeout=30)
    finally:
        code = await stop(proc)
    assert code == 0, (tmp_path / "serve.log").read_text()


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RCC, *args], env=env, capture_output=True, text=True, timeout=120)


async def test_cli_replay_status_and_errors(
    pool: asyncpg.Pool, owner: asyncpg.Connection, cli_env: dict[str, str]
) -> None:
    await mixed_commands(pool, users=2, jobs=3)
    await settle(pool)  # so the replay below reads every event
    events = await owner.fetchval("SELECT count(*) FROM events")

    status = await asyncio.to_thread(run_cli, cli_env, "projections", "status", "--json")
    assert status.returncode == 0, status.stderr
    lags = {s["name"]: s["lag_events"] for s in json.loads(status.stdout)}
    assert lags == dict.fromkeys(NAMES, events)

    replayed = await asyncio.to_thread(run_cli, cli_env, "replay", "--projection", "ledger")
    assert replayed.returncode == 0, replayed.stderr
    assert "events/s" in replayed.stderr and "100.0%" in replayed.stderr
    assert f"replayed {events:,} events into ledger" in replayed.stdout

    table = await asyncio.to_thread(run_cli, cli_env, "projections", "status")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows["ledger"][3] == "0" and rows["jobs"][3] == str(events)

    unknown = await asyncio.to_thread(run_cli, cli_env, "replay", "--projection", "nope")
    assert unknown.returncode == 2 and "unknown projection" in unknown.stderr
