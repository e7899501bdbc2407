"""`rcc bench http` runs end to end: it starts `rcc serve`, drives both paths, mixes in
grants and failures, and proves nothing was lost. Speed is the benchmark's business."""

from __future__ import annotations

import argparse
from pathlib import Path

from rcc.bench.http import run_http_bench
from rcc.config import Settings
from tests.serve_helpers import run_bench


async def test_bench_http_reports_both_paths_and_loses_nothing(
    cli_env: dict[str, str], server_url: str
) -> None:
    done = await run_bench(
        cli_env,
        server_url,
        "http",
        "--clients",
        "4",
        "--seconds",
        "0.5",
        "--users",
        "10",
        "--mix-rate",
        "50",
        limit_s=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    rows = [line.split() for line in out.splitlines()]
    assert any(row[:3] == ["direct", "call", "4"] for row in rows), out
    http = next(row for row in rows if row[:2] == ["HTTP", "4"])
    assert int(http[2]) > 0 and http[7] == "0", out  # ops, errors
    assert "fsync=" in out and "PostgreSQL" in out
    for check in ("jobs:", "caught:", "read:", "balances:"):
        line = next(line for line in out.splitlines() if line.startswith(check))
        assert line.endswith("OK"), line
    assert "audit OK" in out
    assert "[bench]" in done.stderr


async def test_bench_http_refuses_a_database_that_is_not_a_bench_one(tmp_path: Path) -> None:
    args = argparse.Namespace(
        clients=[4], seconds=1.0, users=10, mix_rate=1.0, url=None, database="rcc", rate=None
    )
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/x", data_dir=tmp_path)
    assert await run_http_bench(settings, args) == 2
