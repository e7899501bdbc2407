"""`rcc bench ui` runs end to end on a tiny database and reports every page."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid

import asyncpg


def _run(env: dict[str, str], database: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "rcc.cli", "bench", "ui"),
            *("--users", "4", "--jobs", "120", "--runs", "2", "--database", database),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


async def test_bench_ui_times_every_page(cli_env: dict[str, str], server_url: str) -> None:
    database = f"rcc_bench_{uuid.uuid4().hex[:12]}"
    try:
        done = await asyncio.to_thread(_run, cli_env, database)
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await admin.close()
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "4 users, 120 jobs" in out, out
    for page in ("admin dashboard", "admin jobs list, page 1", "user jobs list", "user credits"):
        assert any(line.strip().startswith(page) and "p99" in line for line in out.splitlines())
    assert "meets the 2 s requirement" in out
