"""A managed PostgreSQL as Supabase and Neon give it, for tests: a cluster of its own (so
the app role does not exist yet), owners that are not superusers, and Debian's PgBouncer
in transaction mode in front of it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


@contextlib.contextmanager
def fresh_cluster() -> Iterator[str]:
    """A new PostgreSQL 16 cluster (pgserver's binaries) for the block; its superuser URL."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    # Readable by all: when the tests run as root, pgserver's server and PgBouncer run
    # as an unprivileged user who must reach the socket inside.
    root = Path(tempfile.mkdtemp(prefix="rcc-managed-"))
    root.chmod(0o755)
    server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")  # type: ignore[attr-defined]
    try:
        url = str(server.get_uri())
        asyncio.run(_tune_for_tests(url))
        yield url
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


async def _tune_for_tests(url: str) -> None:
    # As tests/conftest.py does for the shared test server: the throwaway cluster trades
    # durability for speed (and the fault tests then meet the same timing as there).
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ALTER SYSTEM SET fsync = off")
        await conn.execute("ALTER SYSTEM SET synchronous_commit = off")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


def as_user(url: str, user: str, database: str) -> str:
    """The same server reached as `user`, in `database`."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}", path=f"/{database}"))


async def create_owner(server_url: str, name: str, *, createrole: bool) -> str:
    """A login role that is not a superuser (with CREATEROLE or not) owning a database
    of its name, as a managed service hands out; the owner's URL to it."""
    conn = await asyncpg.connect(server_url)
    try:
        extra = "CREATEROLE" if createrole else "NOCREATEROLE"
        await conn.execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER {extra}")
        await conn.execute(f"CREATE DATABASE {name} OWNER {name}")
    finally:
        await conn.close()
    return as_user(server_url, name, name)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgBouncer:
    """`pgbouncer` with pool_mode=transaction on a free port, in front of `server_url`'s
    Unix socket; `url(user, database)` reaches the server through it."""

    def __init__(self, server_url: str, users: list[str], workdir: Path) -> None:
        socket_dir = parse_qs(urlsplit(server_url).query)["host"][0]
        self.port = _free_port()
        self.log = workdir / "pgbouncer.log"
        auth = workdir / "users.txt"
        auth.write_text("".join(f'"{user}" ""\n' for user in users))
        config = workdir / "pgbouncer.ini"
        config.write_text(
            f"""[databases]
* = host={socket_dir} port=5432
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {auth}
pool_mode = transaction
default_pool_size = 8
max_client_conn = 400
"""
        )
        # PgBouncer refuses to run as root: then it runs as the server's own user.
        user = ["-u", Path(socket_dir).owner()] if os.geteuid() == 0 else []
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [PGBOUNCER, *user, str(config)], stdout=sink, stderr=subprocess.STDOUT
            )
        self._wait_listening()

    def _wait_listening(self) -> None:
        end = time.monotonic() + 15
        while time.monotonic() < end:
            assert self.proc.poll() is None, self.log.read_text()
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"pgbouncer did not listen:\n{self.log.read_text()}")

    def url(self, user: str, database: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
