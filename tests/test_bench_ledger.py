"""`rcc bench ledger` runs end to end and reports; speed is the benchmark's business, not ours.

The bench makes its own database next to the test's (a unique name per test, so parallel
workers never drop each other's), runs a tiny configuration and must print every row,
the durability settings and a passing audit.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from rcc.bench.ledger import percentile_ms, run_ledger_bench
from rcc.config import Settings
from tests.serve_helpers import run_bench


async def test_bench_prints_every_phase_and_a_passing_audit(
    cli_env: dict[str, str], server_url: str
) -> None:
    done = await run_bench(
        cli_env,
        server_url,
        "ledger",
        "--seconds",
        "0.2",
        "--clients",
        "4",
        "--wallets",
        "20",
        "--burst",
        "20",
        limit_s=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "fsync=" in out and "synchronous_commit=" in out and "PostgreSQL" in out
    for target in ("20 wallets", "hot wallet"):
        for path in ("baseline", "event-sourced"):
            rows = [line.split() for line in out.splitlines() if line.startswith(target)]
            assert any(path in row and "4" in row for row in rows), (target, path, out)
    assert out.count("x MISSED") + out.count("x met") == 2  # one ratio per target
    assert "burst:    20/20" in out and "reserves:" in out and " OK" in out
    assert "audit OK" in out
    assert "[bench]" in done.stderr  # progress goes to stderr, one line per phase


async def test_bench_refuses_to_drop_a_database_that_is_not_a_bench_one(tmp_path: Path) -> None:
    args = argparse.Namespace(clients=[4], seconds=1.0, wallets=10, burst=0, database="rcc")
    # No server is touched: the name is refused before any connection is made.
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/x", data_dir=tmp_path)
    assert await run_ledger_bench(settings, args) == 2


@pytest.mark.parametrize(
    ("latencies", "q", "expected_ms"),
    [
        ([0.001, 0.002, 0.003, 0.004], 0.5, 2.0),
        ([0.001] * 99 + [0.5], 0.99, 1.0),
        ([0.2], 0.99, 200.0),
    ],
)
def test_percentiles_are_nearest_rank(latencies: list[float], q: float, expected_ms: float) -> None:
    assert percentile_ms(latencies, q) == pytest.approx(expected_ms)
