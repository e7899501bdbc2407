"""`rcc serve` on the embedded default: no DATABASE_URL, data kept in $RCC_DATA_DIR."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_ready(base: str, proc: subprocess.Popen[str], deadline_s: float = 60) -> dict[str, object]:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        assert proc.poll() is None, f"rcc serve exited with {proc.returncode}"
        try:
            status, body = get_json(f"{base}/readyz")
            if status == 200:
                return body
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("rcc serve did not become ready")


@pytest.fixture
def embedded_env() -> Iterator[dict[str, str]]:
    # Not under tmp_path: pytest makes its base directory private (0700) again whenever
    # a worker asks for it, and the embedded server runs as `pgserver` when we are root.
    home = Path(tempfile.mkdtemp(prefix="rcc-serve-"))
    home.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["RCC_DATA_DIR"] = str(home / "data")
    yield env
    shutil.rmtree(home, ignore_errors=True)


def serve(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    log = Path(env["RCC_DATA_DIR"]).parent / f"serve-{port}.log"
    with log.open("a") as sink:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "rcc.cli", "serve", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
        )


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def test_serve_starts_its_own_postgres_and_reuses_it(embedded_env: dict[str, str]) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(embedded_env, port)
    try:
        assert wait_ready(base, proc)["status"] == "ready"
        assert get_json(f"{base}/healthz") == (200, {"status": "ok"})
    finally:
        stop(proc)
    # Every part of `rcc serve` asks for the database URL; the start is logged once.
    log = (Path(embedded_env["RCC_DATA_DIR"]).parent / f"serve-{port}.log").read_text()
    assert log.count("embedded PostgreSQL running") == 1, log
    pgdata = Path(embedded_env["RCC_DATA_DIR"]) / "pgdata"
    assert (pgdata / "PG_VERSION").read_text().strip() == "16"

    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "rcc.cli",
            "tokens",
            "create",
            "--role",
            "user",
            "--email",
            "a@b.io",
        ],
        env=embedded_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr

    proc = serve(embedded_env, port)
    try:
        wait_ready(base, proc)
        audit = subprocess.run(
            [sys.executable, "-m", "rcc.cli", "audit", "verify"],
            env=embedded_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        # The user made between the two runs is still there: the data directory was reused
        # (2 events), and the two sample templates were published once, not per start.
        assert "checked 4 events in 4 streams" in audit.stdout, audit.stdout + audit.stderr
    finally:
        stop(proc)
