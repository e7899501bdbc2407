"""A rolling deploy: a newer writer records an event type the running followers do not
know. Real processes: the old `rcc projector` / `rcc adapter` stop just before it and
say so (log, `rcc projections status`, /readyz of a real `rcc portal`), never move past
it; killed with -9 and replaced by the newer version (tests/newer_version.py), the
follower goes on from its checkpoint, and the result equals a replay of the log."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from projections import queries
from projections.registry import ALL, NAMES
from rcc.follower.status import FollowerStatus, status
from rcc.projector.replay import replay
from tests.adapter_helpers import SUCCESS, create_job, job_events, status_of, wait_status
from tests.helpers import funded_user
from tests.newer_version import ORG_OPENED, OrgOpened, write_newer_event
from tests.projection_helpers import behind, differences, dump, register
from tests.serve_helpers import RccProcess, get_json, rcc_env, run_rcc, serve

ADAPTER = "adapter:comfy_adapter"  # the adapter's row in follower_checkpoints
BLOCKED_LINE = "unknown event type 'org_opened' — this version is older than the writer"


def start(env: dict[str, str], log: Path, *argv: str, newer: bool = False) -> RccProcess:
    """`rcc <argv>` as this version, or (newer) as the version that knows org_opened."""
    process = RccProcess(list(argv), env, log)
    module = "tests.newer_version" if newer else "rcc.cli"
    with log.open("ab") as sink:
        process.proc = subprocess.Popen(
            [sys.executable, "-m", module, *argv], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    return process


def health(env: dict[str, str], part: str) -> subprocess.CompletedProcess[str]:
    """`rcc health <part>`, the containers' healthcheck."""
    return subprocess.run(
        [sys.executable, "-m", "rcc.cli", "health", part],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    return rcc_env(db_url, tmp_path / "data")


@pytest.fixture
def portal(env: dict[str, str], tmp_path: Path) -> Iterator[RccProcess]:
    """A real `rcc portal` (this version), for /readyz over TCP."""
    process = serve(env, tmp_path, "portal")
    process.wait_http("/healthz")
    yield process
    process.stop()


async def statuses(pool: asyncpg.Pool) -> dict[str, FollowerStatus]:
    async with pool.acquire() as conn:
        return {s.name: s for s in await status(conn)}


async def wait_blocked(pool: asyncpg.Pool, names: set[str], process: RccProcess) -> None:
    async with asyncio.timeout(60):
        while True:
            found = await statuses(pool)
            if all(found[n].blocked for n in names):
                return
            assert process.alive(), process.tail()
            await asyncio.sleep(0.05)


def newer_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test process reads the log as the newer version does (for the replay)."""
    from rcc.domain import events

    monkeypatch.setitem(events.EVENT_CLASSES, ORG_OPENED, OrgOpened)


async def test_an_old_projector_stops_at_a_newer_event_and_the_upgrade_resumes(
    pool: asyncpg.Pool,
    owner: asyncpg.Connection,
    env: dict[str, str],
    portal: RccProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = await register(pool, grant=5)
    old = start(env, tmp_path / "old-projector.log", "projector", "--poll-interval", "0.05")
    try:
        async with asyncio.timeout(60):
            while True:  # the old version keeps up with what it knows
                async with pool.acquire() as conn:
                    if not await behind(conn):
                        break
                await asyncio.sleep(0.05)
        async with pool.acquire() as conn:
            before = int(await conn.fetchval("SELECT max(position) FROM events"))
        newer = await write_newer_event(pool, "acme")
        second = await register(pool, grant=7)  # behind the unknown event
        await wait_blocked(pool, set(NAMES), old)
        await asyncio.sleep(1.0)  # time to move past it, if it were going to

        line = f"blocked at position {newer.position}: {BLOCKED_LINE}"
        found = await statuses(pool)
        assert all(found[n].blocked == line for n in NAMES)
        assert {found[n].checkpoint.position for n in NAMES} == {before}
        async with pool.acquire() as conn:
            assert await queries.user(conn, first) is not None
            assert await queries.user(conn, second) is None
        assert line in old.log.read_text()
        shown = run_rcc(env, "projections", "status")
        assert all(f"{n} " in shown for n in NAMES) and shown.count(line) == len(NAMES)
        code, body = get_json(f"{portal.base}/readyz")
        assert code == 503 and body["status"] == "blocked"
        assert body["blocked"] == dict.fromkeys(NAMES, line)
        checked = health(env, "projector")
        assert checked.returncode == 1 and line in checked.stdout
        assert old.alive(), "blocked is a state to report, not a crash"
    finally:
        old.kill9()

    newer_proc = start(env, tmp_path / "new-projector.log", "projector", newer=True)
    try:
        async with asyncio.timeout(60):
            while True:
                async with pool.acquire() as conn:
                    if not await behind(conn):
                        break
                assert newer_proc.alive(), newer_proc.tail()
                await asyncio.sleep(0.05)
        async with pool.acquire() as conn:
            assert await queries.user(conn, second) is not None
        assert all(s.blocked is None for s in (await statuses(pool)).values())
        assert get_json(f"{portal.base}/readyz")[0] == 200
        status_json = json.loads(run_rcc(env, "projections", "status", "--json"))
        assert {s["name"]: s["blocked"] for s in status_json} == dict.fromkeys(NAMES)
    finally:
        assert newer_proc.stop() == 0
    newer_decoder(monkeypatch)
    projected = await dump(owner)
    await replay(owner, ALL)
    replayed = await dump(owner)
    assert replayed == projected, differences(projected, replayed)


async def test_an_old_adapter_stops_at_a_newer_event_and_the_upgrade_resumes(
    pool: asyncpg.Pool,
    env: dict[str, str],
    portal: RccProcess,
    tmp_path: Path,
) -> None:
    user = await funded_user(pool, 20)
    # No ComfyUI backend: the adapter still marks new jobs queued, which is what we watch.
    old = start(env, tmp_path / "old-adapter.log", "adapter")
    try:
        early = await create_job(pool, user, SUCCESS)
        await wait_status(pool, early, "queued", within=60)
        newer = await write_newer_event(pool, "acme")
        late = await create_job(pool, user, SUCCESS)
        await wait_blocked(pool, {ADAPTER}, old)
        await asyncio.sleep(1.0)

        line = f"blocked at position {newer.position}: {BLOCKED_LINE}"
        adapter = (await statuses(pool))[ADAPTER]
        assert adapter.kind == "subscriber" and adapter.blocked == line
        assert adapter.checkpoint.position < newer.position
        assert await status_of(pool, late) == "created", "the old adapter must not take it"
        async with pool.acquire() as conn:
            known = {r["job_id"] for r in await conn.fetch("SELECT job_id FROM adapter_jobs")}
        assert known == {early}
        assert line in old.log.read_text()
        shown = run_rcc(env, "projections", "status")
        assert any(ADAPTER in row and line in row for row in shown.splitlines())
        code, body = get_json(f"{portal.base}/readyz")
        assert code == 503 and body["blocked"][ADAPTER] == line
        checked = health(env, "adapter")
        assert checked.returncode == 1 and line in checked.stdout
    finally:
        old.kill9()

    upgraded = start(env, tmp_path / "new-adapter.log", "adapter", newer=True)
    try:
        await wait_status(pool, late, "queued", within=60)
        async with asyncio.timeout(30):
            while True:  # until it has also read back its own JobQueued events
                adapter = (await statuses(pool))[ADAPTER]
                if adapter.blocked is None and adapter.lag_events == 0:
                    break
                await asyncio.sleep(0.05)
    finally:
        assert upgraded.stop() == 0
    # Nothing re-done, nothing skipped: each job queued once, and the adapter's table
    # holds what the whole log says of each job (a replay of it would give the same).
    for job in (early, late):
        kinds = [type(e).__name__ for e in await job_events(pool, job)]
        assert kinds == ["JobCreated", "JobQueued"], kinds
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT job_id, status FROM adapter_jobs ORDER BY position")
    assert [(r["job_id"], r["status"]) for r in rows] == [(early, "queued"), (late, "queued")]
