"""`rcc bench projections` runs end to end at a tiny size; the figures are the bench's
business (docs/PROJECTIONS.md), not the tests'."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import asyncpg

from rcc.audit import verify
from rcc.store.database import connect_owner
from tests.conftest import with_database


async def test_bench_projections_generates_replays_queries_and_measures_lag(
    cli_env: dict[str, str], server_url: str
) -> None:
    database = f"rcc_bench_proj_{uuid.uuid4().hex[:12]}"  # unique: parallel workers
    command = [
        *(sys.executable, "-m", "rcc.cli", "bench", "projections"),
        *("--events", "3000", "--seconds", "0.5", "--clients", "2", "--database", database),
    ]
    try:
        done = await asyncio.to_thread(
            subprocess.run, command, env=cli_env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr
        for line in (
            "events in the log",
            "events/s",
            "dashboard",
            "ledger page 1",
            "commit -> projected",
        ):
            assert line in done.stdout, done.stdout
        # Generated through rcc_append_v1: every chain and cached balance holds.
        owner = await connect_owner(with_database(server_url, database))
        try:
            report = await verify(owner)
        finally:
            await owner.close()
        assert report.ok, report.problems[:3]
        assert report.events >= 3000
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
