"""The embedded default: a PostgreSQL 16 shipped by the `pgserver` wheel, no install needed."""

from __future__ import annotations

import fcntl
import logging
import os
import warnings
from pathlib import Path

log = logging.getLogger(__name__)
# Data directories already announced by this process: `rcc serve` asks for the URL once
# per part (migrations, portal, projector, adapter, scheduler), and one line is enough.
_announced: set[Path] = set()


def start_embedded(pgdata: Path, *, stop_at_exit: bool = True) -> str:
    """Start (or reuse) the server whose data lives in `pgdata`; return its URL.

    The data directory survives, so the next start finds the same ledger.
    """
    os.environ.setdefault("XDG_RUNTIME_DIR", str(pgdata.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver  # imported late: it is only needed without DATABASE_URL

    pgdata.mkdir(parents=True, exist_ok=True)
    mode = "stop" if stop_at_exit else None
    # Our own lock around start-up: two processes starting the same fresh data
    # directory at once (test workers, `rcc serve` and `rcc migrate`) must not both run
    # initdb, and pgserver's own lock lives wherever XDG_RUNTIME_DIR pointed at import.
    with (pgdata.parent / f".{pgdata.name}.start.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = pgserver.get_server(pgdata, cleanup_mode=mode)  # type: ignore[attr-defined]
    url: str = server.get_uri()
    if pgdata.resolve() not in _announced:
        _announced.add(pgdata.resolve())
        log.info("embedded PostgreSQL running", extra={"pgdata": str(pgdata)})
    return url


def restart_embedded(pgdata: Path) -> None:
    """Restart the embedded server of `pgdata` (for settings only a restart applies, such
    as max_connections), keeping the options it was started with."""
    import pgserver

    server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    pgserver.pg_ctl(  # type: ignore[attr-defined]
        ["-w", "-m", "fast", "restart"], pgdata=pgdata, user=server.system_user
    )
    follow_restart(pgdata)


def follow_restart(pgdata: Path) -> None:
    """After a restart (by this process or another): pgserver stops the server at the
    last handle's exit through the process it recorded at start, so record the running
    one, or the server is left running."""
    import pgserver
    from pgserver.utils import PostmasterInfo

    server = pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    server._postmaster_info = PostmasterInfo.read_from_pgdata(pgdata)
