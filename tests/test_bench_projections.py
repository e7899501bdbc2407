"""`rcc bench projections` runs end to end at a tiny size; the figures are the bench's
business (docs/PROJECTIONS.md), not the tests'."""

from __future__ import annotations

from rcc.audit import verify
from rcc.store.database import connect_owner
from tests.conftest import with_database
from tests.serve_helpers import bench, bench_database


async def test_bench_projections_generates_replays_queries_and_measures_lag(
    cli_env: dict[str, str], server_url: str
) -> None:
    async with bench_database(server_url) as database:
        done = await bench(
            cli_env,
            database,
            "projections",
            *("--events", "3000", "--seconds", "0.5", "--clients", "2"),
            limit_s=300,
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
