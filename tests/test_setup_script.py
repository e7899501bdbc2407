"""scripts/setup: `make test` prepares a fresh machine itself, or says exactly what to install.

The script runs with a PATH holding only the shell tools it uses (no node, npm, chromium,
podman, runc, busybox, apt-get), as on a machine where nothing was installed and the
user cannot install: it must stop before anything else and name every Debian package.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHELL_TOOLS = ("bash", "dirname", "id", "cat", "mkdir", "flock")


def test_missing_packages_are_named_in_one_apt_get_line(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in SHELL_TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).symlink_to(found)
    result = subprocess.run(
        [str(bin_dir / "bash"), str(REPO / "scripts" / "setup")],
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    line = re.search(r"sudo apt-get install -y --no-install-recommends (.+)", result.stderr)
    assert line, result.stderr
    assert set(line.group(1).split()) >= {
        "make", "nodejs", "npm", "chromium", "podman", "runc", "busybox-static",
    }  # fmt: skip
    assert "podman service" not in result.stdout  # stopped before touching anything


def test_make_test_runs_the_setup_and_ci_runs_make_test() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "test"], cwd=REPO, capture_output=True, text=True, check=True,
        env={**os.environ, "MAKEFLAGS": ""},
    )  # fmt: skip
    commands = dry_run.stdout.splitlines()
    assert "bash scripts/setup" in commands
    assert commands.index("bash scripts/setup") < len(commands) - 1  # before the suite
    assert "make test" in (REPO / ".ci" / "run").read_text()
