"""`--dist loadgroup` keeps each `xdist_group` on one worker (tests/xdist_groups.py).

A small pytest session with two workers runs in a subprocess under this project's own
pytest configuration (pyproject.toml, so the same `-p tests.xdist_groups` the suite
loads). Its tests record which worker ran them; each group must have run on exactly
one worker. The same session with the hook blocked shows why it exists: the pinned
pytest and pytest-xdist then spread each group over both workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Two groups of eight and eight ungrouped tests: plain load scheduling hands out the
# first items in chunks to both workers, so an ignored group is split between them.
TINY_SUITE = """
import json, os, time
import pytest

def record(group, name):
    path = os.environ["GROUP_LOG"]
    with open(path, "a") as log:
        log.write(json.dumps({"group": group, "worker": os.environ["PYTEST_XDIST_WORKER"]}) + "\\n")
    time.sleep(0.05)

@pytest.mark.xdist_group("alpha")
@pytest.mark.parametrize("n", range(8))
def test_alpha(n):
    record("alpha", n)

@pytest.mark.parametrize("n", range(8))
def test_free(n):
    record("free", n)

@pytest.mark.xdist_group(name="beta")
@pytest.mark.parametrize("n", range(8))
def test_beta(n):
    record("beta", n)
"""


def _workers_per_group(tmp_path: Path, *extra: str) -> dict[str, set[str]]:
    suite = tmp_path / "test_tiny_groups.py"
    suite.write_text(TINY_SUITE)
    log = tmp_path / "groups.jsonl"
    log.unlink(missing_ok=True)
    env = {**os.environ, "GROUP_LOG": str(log), "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"),
         "--rootdir", str(tmp_path), "-q", "-p", "no:cacheprovider",
         # plugins the tiny suite does not use, left out to start the workers faster
         "-p", "no:schemathesis", "-p", "no:hypothesispytest", "-p", "no:Faker", "-p", "no:anyio",
         "-n", "2", "--dist", "loadgroup", *extra, str(suite)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(rows) == 24, rows  # every test ran once
    workers: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        workers[row["group"]].add(row["worker"])
    return workers


def test_each_group_runs_on_one_worker(tmp_path: Path) -> None:
    workers = _workers_per_group(tmp_path)
    assert len(workers["alpha"]) == 1, workers
    assert len(workers["beta"]) == 1, workers


def test_without_the_hook_the_pinned_xdist_splits_groups(tmp_path: Path) -> None:
    workers = _workers_per_group(tmp_path, "-p", "no:tests.xdist_groups")
    assert workers["alpha"] == {"gw0", "gw1"} or workers["beta"] == {"gw0", "gw1"}, workers
