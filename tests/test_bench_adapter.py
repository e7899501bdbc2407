"""`rcc bench adapter` runs end to end and reports the dispatch overhead per job."""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import pytest

from rcc.bench.adapter import run_adapter_bench
from rcc.bench.ledger import drop_database
from rcc.config import Settings


async def test_bench_reports_overhead_throughput_and_a_passing_audit(
    server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    database = f"rcc_bench_{uuid.uuid4().hex[:12]}"
    args = argparse.Namespace(jobs=20, backends=2, serial=3, adapters=3, database=database)
    settings = Settings(database_url=server_url, data_dir=tmp_path)
    try:
        assert await run_adapter_bench(settings, args) == 0
    finally:
        await drop_database(server_url, database)
    out = capsys.readouterr().out
    assert "serial (3 jobs, 1 backend): dispatch overhead per job median" in out
    assert "bulk (20 jobs, 2 backends x 2 slots): all succeeded" in out
    assert "every prompt posted once: yes" in out and "audit: OK" in out
    for adapters in (1, 3):
        assert f"dispatch with {adapters} adapter(s) (20 jobs from 20 users, 2 backends" in out
    assert "posted once: NO" not in out


async def test_bench_refuses_a_database_that_is_not_a_bench_one(tmp_path: Path) -> None:
    args = argparse.Namespace(jobs=1, backends=1, serial=1, adapters=1, database="rcc")
    settings = Settings(database_url="postgresql://nobody@127.0.0.1:1/x", data_dir=tmp_path)
    assert await run_adapter_bench(settings, args) == 2
