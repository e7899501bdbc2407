"""Real `rcc` processes for tests that need HTTP over a socket: a database of their own,
start, wait until ready, kill -9, stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from rcc.bench.ledger import drop_database as drop_bench_database
from tests.conftest import with_database


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """GET a JSON document: (status, body); HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


async def create_database(server_url: str, template: str) -> str:
    """A fresh database cloned from the migrated template; its URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    finally:
        await conn.close()
    return with_database(server_url, name)


async def drop_database(server_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class RccProcess:
    """One `rcc <command>` child process; its output goes to a log file for post-mortems."""

    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RccProcess:
        with self.log.open("ab") as sink:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rcc.cli", *self.argv],
                env=self.env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_http(self, path: str = "/readyz", deadline_s: float = 60.0) -> None:
        """Wait until `path` answers 200 (the process must stay alive meanwhile)."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            assert self.alive(), f"rcc {self.argv[0]} exited early:\n{self.tail()}"
            try:
                if get_json(f"{self.base}{path}")[0] == 200:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"rcc {self.argv[0]} did not answer {path}:\n{self.tail()}")

    def kill9(self) -> None:
        """SIGKILL: no shutdown hook runs, in-flight requests die with the process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGTERM and wait for a graceful exit; the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def rcc_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a child `rcc` on `database_url` with its own data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RCC_", "STRIPE_"))}
    env.update(
        {
            "DATABASE_URL": database_url,
            "RCC_DATA_DIR": str(data_dir),
            "RCC_SESSION_SECRET": "test-session-secret",
            "COMFYUI_URLS": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def serve(env: dict[str, str], log_dir: Path, command: str = "serve") -> RccProcess:
    """Start `rcc serve` (or `rcc portal`) on a free port."""
    port = free_port()
    argv = [command, "--host", "127.0.0.1", "--port", str(port)]
    return RccProcess(argv, env, log_dir / f"{command}-{port}.log", port=port).start()


def run_rcc(env: dict[str, str], *argv: str, timeout: float = 120) -> str:
    """Run an `rcc` command to completion; its stdout (a non-zero exit fails the test)."""
    done = subprocess.run(
        [sys.executable, "-m", "rcc.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"rcc {' '.join(argv)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def in_fresh_loop(coro: Any) -> Any:
    """Run a coroutine from a synchronous fixture (no event loop runs there)."""
    return asyncio.run(coro)


@asynccontextmanager
async def bench_database(server_url: str) -> AsyncIterator[str]:
    """A fresh `rcc_bench_*` database name, dropped afterwards whatever happened."""
    database = f"rcc_bench_{uuid.uuid4().hex[:12]}"
    try:
        yield database
    finally:
        await drop_bench_database(server_url, database)


async def bench(
    env: dict[str, str], database: str, suite: str, *args: str, limit_s: float = 180
) -> subprocess.CompletedProcess[str]:
    """`rcc bench <suite> ... --database <database>` as a real process."""
    command = [sys.executable, "-m", "rcc.cli", "bench", suite, *args, "--database", database]
    return await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=limit_s
    )


async def run_bench(
    env: dict[str, str], server_url: str, suite: str, *args: str, limit_s: float = 180
) -> subprocess.CompletedProcess[str]:
    """`rcc bench <suite> ...` on a fresh bench database, dropped afterwards."""
    async with bench_database(server_url) as database:
        return await bench(env, database, suite, *args, limit_s=limit_s)
