"""The SQL read interface (docs/READ_API.md): schema `rcc_read`, role `rcc_reader`, and
the NOTIFY channel `rcc_read_wallet_changed`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from portal.consistency import caught_up
from projections.registry import ALL
from rcc.projector.replay import replay
from rcc.service import commands as c
from rcc.service.org_commands import CreateOrg
from rcc.store.database import connect_owner, create_pool
from tests.conftest import with_database
from tests.helpers import funded_user
from tests.managed_pg import fresh_cluster
from tests.projection_helpers import done, drain
from tests.serve_helpers import rcc_env
from tests.test_faults_commit import ProxyProcess, socket_file

VIEWS = ("balances", "lots", "ledger", "jobs", "payments", "orgs", "org_members")
# What the reader must never read: the log, secrets, and the tables behind the views.
FORBIDDEN = (
    "events",
    "streams",
    "sessions",
    "api_tokens",
    "wallet_balances",
    "lots",
    "jobs",
    "orgs",
)
PASSWORD = "reader-secret-Ü-42"


async def _fill(pool: asyncpg.Pool) -> list[str]:
    """Two users with a top-up, a manual lot that expires, a job run and one failed;
    the first owns an organisation."""
    users = [await funded_user(pool, 20), await funded_user(pool, 5)]
    await done(pool, CreateOrg(user_id=users[0], name="Studio", org_id=str(uuid.uuid4())))
    soon = datetime.now(UTC) + timedelta(days=3)
    await done(
        pool,
        c.AdjustCredits(user_id=users[0], amount=7, actor="admin", note="promo", expires_at=soon),
    )
    for user in users:
        await done(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK", job_id=f"job-{user}"))
    await done(pool, c.MarkJob(job_id=f"job-{users[1]}", status="failed", error="boom"))
    return users


async def _views(conn: asyncpg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    return {
        view: sorted(
            (tuple(row) for row in await conn.fetch(f"SELECT * FROM rcc_read.{view}")), key=repr
        )
        for view in VIEWS
    }


@pytest.fixture
def reader_server(tmp_path: Path) -> Iterator[str]:
    """A cluster of its own that checks rcc_reader's password (pgserver trusts every
    login, and this test changes its authentication file), with a database `rcc`
    migrated by `rcc migrate` with RCC_READER_PASSWORD set; the superuser's URL."""
    with fresh_cluster() as server:
        asyncio.run(_require_reader_password(server))
        env = rcc_env(with_database(server, "rcc"), tmp_path / "data")
        migrated = subprocess.run(
            [sys.executable, "-m", "rcc.cli", "migrate"],
            env={**env, "RCC_READER_PASSWORD": PASSWORD},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert migrated.returncode == 0, migrated.stderr
        assert PASSWORD not in migrated.stdout + migrated.stderr
        yield server


async def _require_reader_password(server: str) -> None:
    admin = await asyncpg.connect(server)
    try:
        await admin.execute("CREATE DATABASE rcc")
        hba = Path(await admin.fetchval("SHOW hba_file"))
        rules = await asyncio.to_thread(hba.read_text)
        await asyncio.to_thread(hba.write_text, "local all rcc_reader scram-sha-256\n" + rules)
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()


async def test_the_reader_logs_in_with_its_password_and_reads_only_the_views(
    reader_server: str,
) -> None:
    server, url = reader_server, with_database(reader_server, "rcc")
    if True:
        pool = await create_pool(url, min_size=1, max_size=8)
        try:
            users = await _fill(pool)
            await drain(pool)
        finally:
            await pool.close()

        proxy = ProxyProcess.start(socket_file(server))
        try:
            reader_url = f"postgresql://rcc_reader@127.0.0.1:{proxy.port}/rcc"
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(reader_url, password="wrong", ssl=False)
            reader = await asyncpg.connect(reader_url, password=PASSWORD, ssl=False)
            try:
                assert await reader.fetchval("SELECT current_user") == "rcc_reader"
                rows = await _views(reader)
                assert [view for view in VIEWS if not rows[view]] == []
                balances = {
                    r["wallet_id"]: r for r in await reader.fetch("SELECT * FROM rcc_read.balances")
                }
                # 20 + 7 granted, 1 held by the running job, drawn from the lot that
                # expires soonest (the promo); 5 - 1 + 1 (the failed job's release).
                assert balances[users[0]]["balance_rcc"] == 26
                assert balances[users[0]]["held_rcc"] == 1
                assert balances[users[0]]["next_expiry_rcc"] == 6
                assert balances[users[1]]["balance_rcc"] == 5
                assert balances[users[1]]["held_rcc"] == 0
                for table in FORBIDDEN:
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await reader.fetch(f"SELECT * FROM public.{table} LIMIT 1")
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await reader.execute("CREATE VIEW rcc_read.mine AS SELECT 1")
            finally:
                await reader.close()
        finally:
            proxy.stop()


async def test_the_views_answer_the_same_before_and_after_replay(
    pool: asyncpg.Pool, owner: asyncpg.Connection
) -> None:
    users = await _fill(pool)
    await drain(pool)
    before = await _views(owner)
    assert all(before[view] for view in VIEWS)

    await replay(owner, ALL)
    assert await _views(owner) == before
    assert await owner.fetchval("SELECT to_regnamespace('rcc_retired')") is None
    for view in VIEWS:  # the same views, so the reader keeps its grants
        assert await owner.fetchval(
            "SELECT has_table_privilege('rcc_reader', $1, 'SELECT')", f"rcc_read.{view}"
        )
    # The views read the rebuilt tables: a write after the swap shows through them.
    await done(pool, c.GrantCredits(user_id=users[1], kind="topup", amount=100))
    await drain(pool)
    balance = await owner.fetchval(
        "SELECT balance_rcc FROM rcc_read.balances WHERE wallet_id = $1", users[1]
    )
    assert balance == 105
    lots = await owner.fetch(
        "SELECT source, remaining_rcc FROM rcc_read.lots WHERE wallet_id = $1 ORDER BY lot_id",
        users[1],
    )
    assert sorted(tuple(r) for r in lots) == [("topup", 5), ("topup", 100)]


async def test_a_listener_hears_the_wallet_and_then_reads_its_new_balance(
    pool: asyncpg.Pool, db_url: str, projector: Any
) -> None:
    user = await funded_user(pool, 0)
    # The wallet's opening projected first: it is not what this test listens for.
    assert await caught_up(pool, user, ["balances", "lots"], 10)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(db_url)
    reader = await connect_owner(db_url)
    await reader.execute("SET ROLE rcc_reader")
    await listener.add_listener(
        "rcc_read_wallet_changed", lambda conn, pid, channel, wallet: heard.put_nowait(wallet)
    )

    async def balance_when_heard() -> tuple[int, int]:
        """On the wallet's next notification, read it at once as a reader would."""
        async with asyncio.timeout(10):
            while await heard.get() != user:
                pass
        row = await reader.fetchrow(
            "SELECT balance_rcc, held_rcc FROM rcc_read.balances WHERE wallet_id = $1", user
        )
        return row["balance_rcc"], row["held_rcc"]

    try:
        await done(pool, c.GrantCredits(user_id=user, kind="topup", amount=12))
        assert await balance_when_heard() == (12, 0)
        await done(pool, c.CreateJob(user_id=user, job_type="IMAGE_TASK"))
        assert await balance_when_heard() == (11, 1)
    finally:
        await listener.close()
        await reader.close()
