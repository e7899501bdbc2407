"""`rcc bench audit` runs end to end at a tiny size; the figures are the bench's
business (docs/AUDIT.md), not the tests'."""

from __future__ import annotations

import re

from rcc.store.database import connect_owner
from tests.conftest import with_database
from tests.serve_helpers import bench, bench_database


async def test_bench_audit_chains_verifies_exports_and_replays(
    cli_env: dict[str, str], server_url: str
) -> None:
    async with bench_database(server_url) as database:
        done = await bench(
            cli_env, database, "audit", "--events", "3000", "--recent", "400", limit_s=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
        rows = [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()]
        lines = {row[0]: row for row in rows}
        for run in (
            "extend the log chain (anchor worker)",
            "verify, full, 2 anchors",
            "verify --since-anchor (last 400)",
            "verify --since-anchor (empty log's)",
            "verify --export, offline",
            "replay (all projections)",
        ):
            assert run in lines, done.stdout
        assert lines["verify --since-anchor (last 400)"][1] == "400"
        assert lines["verify, full, 2 anchors"][-1] == "OK"
        owner = await connect_owner(with_database(server_url, database))
        try:
            chained = await owner.fetchval("SELECT count(*) FROM log_chain")
            assert chained == await owner.fetchval("SELECT count(*) FROM events") >= 3000
        finally:
            await owner.close()
