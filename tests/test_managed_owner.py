"""`rcc migrate` as the owner a managed PostgreSQL gives (Supabase, Neon): CREATEROLE but
no SUPERUSER. Every migration applies and the ledger then runs in the app role; an owner
without CREATEROLE is refused before anything is written, with the privilege named."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from rcc.service import commands as c
from rcc.service.bus import execute
from rcc.service.handlers import Done
from rcc.store.database import create_pool
from rcc.store.migrations import discover
from tests.helpers import balance_of, funded_user
from tests.managed_pg import create_owner, fresh_cluster
from tests.serve_helpers import rcc_env


def _migrate(url: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rcc.cli", "migrate"],
        env=rcc_env(url, data_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def server() -> Iterator[str]:
    """A cluster of its own: rcc_app must not exist yet (roles are cluster-wide)."""
    with fresh_cluster() as url:
        yield url


async def test_migrate_as_owner_with_createrole_but_not_superuser(
    server: str, tmp_path: Path
) -> None:
    # Without CREATEROLE: refused up front, naming the privilege, and nothing written.
    weak = await create_owner(server, "weak_owner", createrole=False)
    refused = _migrate(weak, tmp_path / "weak")
    assert refused.returncode == 1, refused
    assert "CREATEROLE" in refused.stderr
    assert "Traceback" not in refused.stderr
    conn = await asyncpg.connect(weak)
    try:
        assert await conn.fetchval("SELECT to_regclass('schema_migrations')") is None
        assert await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = 'rcc_app'") is None
    finally:
        await conn.close()

    # With CREATEROLE (and still no SUPERUSER): every migration applies.
    owner = await create_owner(server, "rcc_owner", createrole=True)
    applied = _migrate(owner, tmp_path / "owner")
    assert applied.returncode == 0, applied
    expected = [m.version for m in discover()]
    assert applied.stdout.strip() == f"applied {expected}"

    conn = await asyncpg.connect(owner)
    try:
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = 'rcc_owner'")
        pool = await create_pool(owner, min_size=1, max_size=4)
        try:
            await _ledger_runs_as_app_role(pool, conn)
        finally:
            await pool.close()
    finally:
        await conn.close()
    again = _migrate(owner, tmp_path / "owner")
    assert again.returncode == 0 and again.stdout.strip() == "schema is up to date", again


async def _ledger_runs_as_app_role(pool: asyncpg.Pool, owner: asyncpg.Connection) -> None:
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == "rcc_app"
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("UPDATE events SET type = type")
    user_id = await funded_user(pool, 10)
    job = await execute(pool, c.CreateJob(user_id=user_id, job_type="IMAGE_TASK"))
    assert isinstance(job, Done), job
    cancelled = await execute(
        pool, c.MarkJob(job_id=str(job.result["job_id"]), status="cancelled", actor="test")
    )
    assert isinstance(cancelled, Done), cancelled
    second = await execute(pool, c.CreateJob(user_id=user_id, job_type="IMAGE_TASK"))
    assert isinstance(second, Done), second
    assert await balance_of(owner, user_id) == 10 - 1
